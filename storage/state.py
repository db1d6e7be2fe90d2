"""Short-lived shared state: counters, flags and presence.

One interface, two implementations: ``InProcessState`` for a single node and
``RedisState`` for a cluster. Revocation, rate limits, login throttling and
presence are built on these few operations, so they behave the same in both.
Every key expires on its own: a node that dies leaves nothing behind for long.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

from services.clock import Clock

__all__ = ["EphemeralState", "InProcessState", "RedisState"]


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

    # Presence: a per-group set of members, each with its own expiry.
    async def member_put(self, group: str, member: str, ttl_s: float) -> None: ...

    async def member_remove(self, group: str, member: str) -> None: ...

    async def members(self, group: str) -> list[str]:
        """Members whose lifetime has not run out."""
        ...

    async def members_expired(self, group: str) -> list[str]:
        """Remove and return members whose lifetime ran out."""
        ...

    async def ping(self) -> None: ...


class InProcessState:
    """Single-node state kept in this process, timed by the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}
        self._flags: dict[str, float] = {}
        self._groups: dict[str, dict[str, float]] = {}
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

    async def member_put(self, group: str, member: str, ttl_s: float) -> None:
        self._groups.setdefault(group, {})[member] = self._now() + ttl_s

    async def member_remove(self, group: str, member: str) -> None:
        members = self._groups.get(group)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._groups[group]

    async def members(self, group: str) -> list[str]:
        now = self._now()
        return [m for m, until in self._groups.get(group, {}).items() if until > now]

    async def members_expired(self, group: str) -> list[str]:
        now = self._now()
        members = self._groups.get(group, {})
        gone = [m for m, until in members.items() if until <= now]
        for member in gone:
            del members[member]
        if not members:
            self._groups.pop(group, None)
        return gone

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

# Remove and return members whose score (expiry, ms since epoch by Redis' clock) has passed.
_EXPIRED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) end
return gone
"""

_PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return now
"""

_LIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
"""


class RedisState:
    """Cluster state in Redis; all expiry is Redis' own, so a dead node's keys lapse."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._incr = redis.register_script(_INCR)
        self._expired = redis.register_script(_EXPIRED)
        self._put = redis.register_script(_PUT)
        self._live = redis.register_script(_LIVE)

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

    async def member_put(self, group: str, member: str, ttl_s: float) -> None:
        await self._put(keys=[self._k(group)], args=[member, max(1, int(ttl_s * 1000))])

    async def member_remove(self, group: str, member: str) -> None:
        await self._redis.zrem(self._k(group), member)

    async def members(self, group: str) -> list[str]:
        raw = await self._live(keys=[self._k(group)])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]

    async def members_expired(self, group: str) -> list[str]:
        raw = await self._expired(keys=[self._k(group)])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]

    async def ping(self) -> None:
        await self._redis.ping()
