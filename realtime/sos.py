"""The SOS events on ``/``: parse, call the SOS service, shape the ack."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.sos import SosService
from services.wire import sockets as wire

__all__ = ["register"]


def register(door: SocketDoor, sos: SosService) -> None:
    async def raise_alert(session: SocketSession, payload: wire.RaiseAlert) -> dict[str, Any]:
        alert = await sos.raise_alert(
            session.user_id,
            session.sid,
            client_alert_id=payload.client_alert_id,
            note=payload.note,
            lat=payload.lat,
            lon=payload.lon,
            accuracy_m=payload.accuracy_m,
        )
        return {"alert": alert.public()}

    async def location(session: SocketSession, payload: wire.AlertLocation) -> None:
        await sos.location(
            session.user_id,
            session.sid,
            alert_id=payload.alert_id,
            lat=payload.lat,
            lon=payload.lon,
            accuracy_m=payload.accuracy_m,
        )

    async def acknowledge(session: SocketSession, payload: wire.AlertRef) -> dict[str, Any]:
        alert = await sos.acknowledge(session.user_id, payload.alert_id)
        return {"alert": alert.public()}

    async def resolve(session: SocketSession, payload: wire.AlertRef) -> dict[str, Any]:
        alert = await sos.resolve(session.user_id, payload.alert_id)
        return {"alert": alert.public()}

    async def connected(session: SocketSession) -> None:
        await sos.contact_connected(session.sid, session.user_id)

    door.after_connect(connected)
    door.on(
        "sos:raise",
        raise_alert,
        payload=wire.RaiseAlert,
        ack=wire.AlertAck,
        summary="Raise an alert: stored with its recipients and owed pushes and SMS in one "
        "transaction, then sos:alert to every contact. Idempotent on client_alert_id.",
    )
    door.on(
        "sos:location",
        location,
        payload=wire.AlertLocation,
        ack=wire.Empty,
        summary="A new position (the raiser only); at most one point a second is kept.",
    )
    door.on(
        "sos:ack",
        acknowledge,
        payload=wire.AlertRef,
        ack=wire.AlertAck,
        summary="A contact takes the alert: status acknowledged.",
    )
    door.on(
        "sos:resolve",
        resolve,
        payload=wire.AlertRef,
        ack=wire.AlertAck,
        summary="The raiser or a contact closes the alert: status resolved.",
    )
