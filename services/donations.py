"""Donation tickers: a project's totals and recent donations, and who watches them live."""

from __future__ import annotations

from typing import Any

from services.ports import SocketRooms
from storage.projects import ProjectRepository

__all__ = ["TickerService"]


class TickerService:
    def __init__(self, projects: ProjectRepository, sockets: SocketRooms) -> None:
        self._projects = projects
        self._sockets = sockets

    async def ticker(self, project_id: str) -> dict[str, Any]:
        """A project never heard of has a zero ticker."""
        return await self._projects.ticker(project_id)

    async def subscribe(self, sid: str, project_id: str) -> dict[str, Any]:
        # Join first, then read: a donation between the two is seen twice, never missed.
        await self._sockets.join_project(sid, project_id)
        return await self._projects.ticker(project_id)

    async def unsubscribe(self, sid: str, project_id: str) -> None:
        await self._sockets.leave_project(sid, project_id)
