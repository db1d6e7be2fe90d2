"""The session events on ``/``: the in-band token refresh."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.auth import AuthService
from services.clock import iso
from services.validation import Payload

__all__ = ["register"]


def register(door: SocketDoor, auth: AuthService) -> None:
    async def refresh(session: SocketSession, payload: Payload) -> dict[str, Any]:
        identity = await auth.socket_refresh(
            session.identity, payload.string("token", max_len=8192)
        )
        door.reauthenticate(session.sid, identity)
        return {"expires_at": iso(identity.expires_at)}

    door.on("auth:refresh", refresh)
