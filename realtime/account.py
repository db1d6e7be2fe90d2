"""The session events on ``/``: the in-band token refresh."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.auth import AuthService
from services.clock import iso
from services.wire import sockets as wire

__all__ = ["register"]


def register(door: SocketDoor, auth: AuthService) -> None:
    async def refresh(session: SocketSession, payload: wire.TokenRefresh) -> dict[str, Any]:
        identity = await auth.socket_refresh(session.identity, payload.token)
        door.reauthenticate(session.sid, identity)
        return {"expires_at": iso(identity.expires_at)}

    door.on(
        "auth:refresh",
        refresh,
        payload=wire.TokenRefresh,
        ack=wire.Expiry,
        summary="Go on under a fresh access token of the same user (after auth:expiring); "
        "the socket keeps its rooms. A token that fails is unauthorized and changes nothing.",
    )
