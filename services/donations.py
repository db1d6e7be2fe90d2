"""Donation tickers: a project's totals and recent donations, and who watches them live."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from services.clock import Clock
from services.ports import SocketRooms
from storage.projects import ProjectRepository

__all__ = ["LISTING_MAX", "TickerService"]

LISTING_DEFAULT = 50
LISTING_MAX = 200
# The donations chart: per hour for 48 hours, per day for this many days before.
SERIES_DAYS = 60


class TickerService:
    def __init__(
        self,
        projects: ProjectRepository,
        sockets: SocketRooms,
        clock: Clock,
        *,
        cache_s: float = 30.0,
        cache_size: int = 10_000,
    ) -> None:
        self._projects = projects
        self._sockets = sockets
        self._clock = clock
        # Tickers as last read, so a reconnect storm of viewers is not a query storm:
        # project id -> (the project's version when read, read at, ticker). Any news of a
        # project on this node (a donation, its own or a peer's) bumps its version.
        self._cache: OrderedDict[str, tuple[tuple[int, int], float, dict[str, Any]]] = OrderedDict()
        self._versions: dict[str, int] = {}
        # Reads on their way, so a herd that misses the cache together waits for one
        # query: project id -> (the project's version when it started, the read).
        self._loading: dict[str, tuple[tuple[int, int], asyncio.Task[dict[str, Any]]]] = {}
        self._epoch = 0  # bumped when the versions are forgotten (bounded memory)
        self._cache_s = cache_s
        self._cache_size = cache_size
        sockets.on_project_news(self._stale)

    def _stale(self, project_id: str) -> None:
        if len(self._versions) >= 10 * self._cache_size:
            self._versions.clear()
            self._cache.clear()
            self._epoch += 1
        self._versions[project_id] = self._versions.get(project_id, 0) + 1
        self._cache.pop(project_id, None)

    def _version(self, project_id: str) -> tuple[int, int]:
        return self._epoch, self._versions.get(project_id, 0)

    async def _cached_ticker(self, project_id: str) -> dict[str, Any]:
        now = self._clock.monotonic()
        version = self._version(project_id)
        hit = self._cache.get(project_id)
        if hit is not None and hit[0] == version and now - hit[1] < self._cache_s:
            self._cache.move_to_end(project_id)
            return hit[2]
        loading = self._loading.get(project_id)
        if loading is None or loading[0] != version:
            # A read started before news of the project may predate it: not shared.
            read = asyncio.get_running_loop().create_task(self._read(project_id, version, now))
            read.add_done_callback(_retrieved)  # its error is the viewers'; none may be left
            loading = self._loading[project_id] = (version, read)
        # Shielded: a viewer that goes away mid-read does not cancel the others' read.
        return await asyncio.shield(loading[1])

    async def _read(self, project_id: str, version: tuple[int, int], now: float) -> dict[str, Any]:
        try:
            ticker = await self._projects.ticker(project_id)
        finally:
            if self._loading.get(project_id, (None,))[0] == version:
                del self._loading[project_id]
        # Kept only if no news came while it was read (else it may predate the news).
        if self._version(project_id) == version:
            self._cache[project_id] = (version, now, ticker)
            self._cache.move_to_end(project_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ticker

    async def projects(self, *, query: str | None, limit: int | None) -> list[dict[str, Any]]:
        """The projects Lifeline knows (from project.updated and donations), with totals."""
        wanted = (query or "").strip() or None
        return await self._projects.listing(
            query=wanted, limit=min(limit or LISTING_DEFAULT, LISTING_MAX)
        )

    async def series(self, project_id: str) -> dict[str, Any]:
        """Donations over time: per hour for the last 48 hours, per day before that."""
        ticker = await self._projects.ticker(project_id)
        buckets = await self._projects.series(project_id, now=self._clock.now(), days=SERIES_DAYS)
        return {"project_id": project_id, "currency": ticker["currency"], **buckets}

    async def ticker(self, project_id: str) -> dict[str, Any]:
        """A project never heard of has a zero ticker."""
        return await self._projects.ticker(project_id)

    async def subscribe(self, sid: str, project_id: str) -> dict[str, Any]:
        # Join first, then read: a donation between the two is seen twice, never missed
        # (a cached ticker is as new as the last news of the project this node had).
        await self._sockets.join_project(sid, project_id)
        return await self._cached_ticker(project_id)

    async def unsubscribe(self, sid: str, project_id: str) -> None:
        await self._sockets.leave_project(sid, project_id)


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
