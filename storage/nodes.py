"""Every live node's own figures (sockets, events per second), for the operator view.

Each node reports itself with a short lifetime; a node that stops reporting
drops out of the list on its own.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from services.clock import Clock
from storage.redis_link import Commands

__all__ = ["InProcessNodes", "NodeDirectory", "RedisNodes"]


class NodeDirectory(Protocol):
    async def report(self, node_id: str, stats: dict[str, Any], ttl_s: float) -> None: ...

    async def all(self) -> list[dict[str, Any]]: ...


class InProcessNodes:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._nodes: dict[str, tuple[dict[str, Any], float]] = {}

    async def report(self, node_id: str, stats: dict[str, Any], ttl_s: float) -> None:
        self._nodes[node_id] = ({"node_id": node_id, **stats}, self._clock.monotonic() + ttl_s)

    async def all(self) -> list[dict[str, Any]]:
        now = self._clock.monotonic()
        return sorted(
            (s for s, until in self._nodes.values() if until > now), key=lambda s: s["node_id"]
        )


class RedisNodes:
    """Each node's figures under one hash tag, listed by a sorted set of lifetimes
    (so listing them is one slot's work on a Redis Cluster too)."""

    def __init__(self, redis: Commands, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "{nodes}:"
        self._index = self._prefix + "index"

    async def report(self, node_id: str, stats: dict[str, Any], ttl_s: float) -> None:
        value = orjson.dumps({"node_id": node_id, **stats})
        ttl_ms = max(1, int(ttl_s * 1000))
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._prefix + node_id, value, px=ttl_ms)
            pipe.zadd(self._index, {node_id: now_ms + ttl_ms})
            pipe.zremrangebyscore(self._index, "-inf", now_ms)
            pipe.pexpire(self._index, ttl_ms * 10)
            await pipe.execute()

    async def all(self) -> list[dict[str, Any]]:
        ids = await self._redis.zrangebyscore(self._index, int(time.time() * 1000), "+inf")
        if not ids:
            return []
        names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
        values = await self._redis.mget([self._prefix + n for n in names])
        found = [orjson.loads(v) for v in values if v is not None]
        return sorted(found, key=lambda s: str(s["node_id"]))
