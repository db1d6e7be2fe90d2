"""The SOS events on ``/``: parse, call the SOS service, shape the ack."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.sos import SosService
from services.validation import Payload

__all__ = ["register"]


def _position(payload: Payload) -> dict[str, Any]:
    return {
        "lat": payload.number("lat", minimum=-90.0, maximum=90.0),
        "lon": payload.number("lon", minimum=-180.0, maximum=180.0),
        "accuracy_m": payload.opt_number("accuracy_m", minimum=0.0, maximum=1e7),
    }


def register(door: SocketDoor, sos: SosService) -> None:
    async def raise_alert(session: SocketSession, payload: Payload) -> dict[str, Any]:
        alert = await sos.raise_alert(
            session.user_id,
            session.sid,
            client_alert_id=payload.string("client_alert_id", max_len=128),
            note=payload.opt_string("note", max_len=1000),
            **_position(payload),
        )
        return {"alert": alert.public()}

    async def location(session: SocketSession, payload: Payload) -> None:
        await sos.location(
            session.user_id,
            session.sid,
            alert_id=payload.identifier("alert_id"),
            **_position(payload),
        )

    async def acknowledge(session: SocketSession, payload: Payload) -> dict[str, Any]:
        alert = await sos.acknowledge(session.user_id, payload.identifier("alert_id"))
        return {"alert": alert.public()}

    async def resolve(session: SocketSession, payload: Payload) -> dict[str, Any]:
        alert = await sos.resolve(session.user_id, payload.identifier("alert_id"))
        return {"alert": alert.public()}

    async def connected(session: SocketSession) -> None:
        await sos.contact_connected(session.sid, session.user_id)

    door.after_connect(connected)
    door.on("sos:raise", raise_alert)
    door.on("sos:location", location)
    door.on("sos:ack", acknowledge)
    door.on("sos:resolve", resolve)
