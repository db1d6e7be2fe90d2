"""Every live node's own figures (sockets, events per second), for the operator view.

Each node reports itself with a short lifetime; a node that stops reporting
drops out of the list on its own.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from services.clock import Clock

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
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "node:"

    async def report(self, node_id: str, stats: dict[str, Any], ttl_s: float) -> None:
        value = orjson.dumps({"node_id": node_id, **stats})
        await self._redis.set(self._prefix + node_id, value, px=max(1, int(ttl_s * 1000)))

    async def all(self) -> list[dict[str, Any]]:
        keys = [k async for k in self._redis.scan_iter(match=self._prefix + "*", count=100)]
        if not keys:
            return []
        values = await self._redis.mget(keys)
        found = [orjson.loads(v) for v in values if v is not None]
        return sorted(found, key=lambda s: str(s["node_id"]))
