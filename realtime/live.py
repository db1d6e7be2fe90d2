"""Events on ``/live`` (public donation tickers) and ``notification:read`` on ``/``."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.donations import TickerService
from services.notifications import NotificationService
from services.validation import Payload

__all__ = ["register"]


def register(door: SocketDoor, tickers: TickerService, notifications: NotificationService) -> None:
    async def subscribe(sid: str, payload: Payload) -> dict[str, Any]:
        return {"ticker": await tickers.subscribe(sid, payload.identifier("project_id"))}

    async def unsubscribe(sid: str, payload: Payload) -> None:
        await tickers.unsubscribe(sid, payload.identifier("project_id"))

    async def read(session: SocketSession, payload: Payload) -> None:
        await notifications.mark_read(session.user_id, payload.id_list("ids", max_items=500))

    door.on_live("live:subscribe", subscribe)
    door.on_live("live:unsubscribe", unsubscribe)
    door.on("notification:read", read)
