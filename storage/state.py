"""Short-lived shared state: counters and flags.

One interface, two implementations: ``InProcessState`` for a single node and
``RedisState`` for a cluster. Revocation, rate limits and login throttling
are built on these few operations, so they behave the same in both.
Every key expires on its own: a node that dies leaves nothing behind for long.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, Protocol

from services.clock import Clock
from storage.redis_link import REDIS_UNREACHABLE, Commands

_REDIS_DOWN = REDIS_UNREACHABLE


__all__ = ["EphemeralState", "InProcessState", "RedisState", "ResilientState"]


class EphemeralState(Protocol):
    async def incr(self, key: str, window_s: float) -> tuple[int, float]:
        """Count one hit in a fixed window that starts with the first hit.

        Returns the count so far and the seconds until the window closes.
        """
        ...

    async def peek(self, key: str) -> tuple[int, float]: ...

    async def delete(self, *keys: str) -> None: ...

    async def set_flag(self, key: str, ttl_s: float) -> None: ...

    async def flag_ttl(self, keys: Sequence[str]) -> float:
        """The longest remaining lifetime among the keys that are set; 0 if none."""
        ...

    async def ping(self) -> None: ...


class InProcessState:
    """Single-node state kept in this process, timed by the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}
        self._flags: dict[str, float] = {}
        self._expiry_heap: list[tuple[float, str]] = []

    def _now(self) -> float:
        return self._clock.monotonic()

    def _sweep(self) -> None:
        now = self._now()
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            counter = self._counters.get(key)
            if counter is not None and counter[1] <= now:
                del self._counters[key]
            flag = self._flags.get(key)
            if flag is not None and flag <= now:
                del self._flags[key]

    async def incr(self, key: str, window_s: float) -> tuple[int, float]:
        self._sweep()
        now = self._now()
        count, until = self._counters.get(key, (0, 0.0))
        if until <= now:
            count, until = 0, now + window_s
            heapq.heappush(self._expiry_heap, (until, key))
        count += 1
        self._counters[key] = (count, until)
        return count, until - now

    async def peek(self, key: str) -> tuple[int, float]:
        self._sweep()
        count, until = self._counters.get(key, (0, 0.0))
        now = self._now()
        return (count, until - now) if until > now else (0, 0.0)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._counters.pop(key, None)
            self._flags.pop(key, None)

    async def set_flag(self, key: str, ttl_s: float) -> None:
        self._sweep()
        until = self._now() + ttl_s
        if self._flags.get(key, 0.0) < until:
            self._flags[key] = until
            heapq.heappush(self._expiry_heap, (until, key))

    async def flag_ttl(self, keys: Sequence[str]) -> float:
        self._sweep()
        now = self._now()
        return max((self._flags.get(k, now) - now for k in keys), default=0.0)

    async def ping(self) -> None:
        return None


# Atomic "count in a window that starts at the first hit".
_INCR = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"""


class RedisState:
    """Cluster state in Redis; all expiry is Redis' own, so a dead node's keys lapse."""

    def __init__(self, redis: Commands, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._incr = redis.register_script(_INCR)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def incr(self, key: str, window_s: float) -> tuple[int, float]:
        count, ttl_ms = await self._incr(keys=[self._k(key)], args=[max(1, int(window_s * 1000))])
        return int(count), int(ttl_ms) / 1000.0

    async def peek(self, key: str) -> tuple[int, float]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._k(key))
            pipe.pttl(self._k(key))
            raw, ttl_ms = await pipe.execute()
        if raw is None:
            return 0, 0.0
        return int(raw), max(0, int(ttl_ms)) / 1000.0

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._k(k) for k in keys))

    async def set_flag(self, key: str, ttl_s: float) -> None:
        await self._redis.set(self._k(key), b"1", px=max(1, int(ttl_s * 1000)))

    async def flag_ttl(self, keys: Sequence[str]) -> float:
        if not keys:
            return 0.0
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(self._k(key))
            ttls = await pipe.execute()
        return max((int(t) / 1000.0 for t in ttls if int(t) > 0), default=0.0)

    async def ping(self) -> None:
        await self._redis.ping()


class ResilientState:
    """Redis state that keeps counting in this process while Redis is unreachable.

    Counters (rate limits, login throttling) fall back to per-node counting, so
    chat on the sockets a node holds goes on during an outage. Flags
    (revocations, lockouts) do not: reading or writing them without Redis is
    ``unavailable``, because answering "not revoked" from an empty local set
    would let a revoked token in.
    """

    def __init__(self, primary: RedisState, local: InProcessState, on_fallback: Any) -> None:
        self._primary = primary
        self._local = local
        self._on_fallback = on_fallback

    async def incr(self, key: str, window_s: float) -> tuple[int, float]:
        try:
            return await self._primary.incr(key, window_s)
        except _REDIS_DOWN:
            self._on_fallback("incr")
            return await self._local.incr(key, window_s)

    async def peek(self, key: str) -> tuple[int, float]:
        try:
            return await self._primary.peek(key)
        except _REDIS_DOWN:
            self._on_fallback("peek")
            return await self._local.peek(key)

    async def delete(self, *keys: str) -> None:
        await self._local.delete(*keys)
        try:
            await self._primary.delete(*keys)
        except _REDIS_DOWN:
            self._on_fallback("delete")

    async def set_flag(self, key: str, ttl_s: float) -> None:
        await self._primary.set_flag(key, ttl_s)

    async def flag_ttl(self, keys: Sequence[str]) -> float:
        return await self._primary.flag_ttl(keys)

    async def ping(self) -> None:
        await self._primary.ping()
