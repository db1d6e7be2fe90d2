"""Events on ``/live`` (public donation tickers) and ``notification:read`` on ``/``."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.donations import TickerService
from services.notifications import NotificationService
from services.wire import sockets as wire

__all__ = ["register"]


def register(door: SocketDoor, tickers: TickerService, notifications: NotificationService) -> None:
    async def subscribe(sid: str, payload: wire.ProjectRef) -> dict[str, Any]:
        return {"ticker": await tickers.subscribe(sid, payload.project_id)}

    async def unsubscribe(sid: str, payload: wire.ProjectRef) -> None:
        await tickers.unsubscribe(sid, payload.project_id)

    async def read(session: SocketSession, payload: wire.NotificationsRead) -> None:
        await notifications.mark_read(session.user_id, payload.ids)

    door.on_live(
        "live:subscribe",
        subscribe,
        payload=wire.ProjectRef,
        ack=wire.TickerAck,
        summary="Follow a project's ticker: the ack carries it now, donation events follow.",
    )
    door.on_live(
        "live:unsubscribe",
        unsubscribe,
        payload=wire.ProjectRef,
        ack=wire.Empty,
        summary="Stop following a project.",
    )
    door.on(
        "notification:read",
        read,
        payload=wire.NotificationsRead,
        ack=wire.Empty,
        summary="Mark notifications of the caller's read.",
    )
