"""Donation tickers: a project's totals and recent donations, and who watches them live."""

from __future__ import annotations

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
    def __init__(self, projects: ProjectRepository, sockets: SocketRooms, clock: Clock) -> None:
        self._projects = projects
        self._sockets = sockets
        self._clock = clock

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
        # Join first, then read: a donation between the two is seen twice, never missed.
        await self._sockets.join_project(sid, project_id)
        return await self._projects.ticker(project_id)

    async def unsubscribe(self, sid: str, project_id: str) -> None:
        await self._sockets.leave_project(sid, project_id)
