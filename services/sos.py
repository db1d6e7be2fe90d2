"""SOS: raise an alert to every emergency contact at once, follow, escalate, close.

Rules that live here: only the raiser moves the trail, only contacts
acknowledge, the raiser or a contact resolves; everything is committed
(with the SMS and pushes it owes) before it is acked or sent; escalation and
expiry are taken from PostgreSQL by whichever node is alive.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.auth import normalize_phone
from services.clock import Clock, iso
from services.errors import Conflict, Forbidden, Invalid, NotFound
from services.ports import Fanout
from services.presence import PresenceService
from storage.contacts import ContactRecord, ContactRepository
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.rooms import as_uuid
from storage.sos import AlertRecord, Recipient, SosRepository
from storage.users import UserRepository

__all__ = ["SosRules", "SosService"]

log = logging.getLogger(__name__)

_NOT_YOURS = "you neither raised this alert nor are a contact of its raiser"
_CLOSED = ("resolved", "expired")


@dataclass(frozen=True, slots=True)
class SosRules:
    max_contacts: int = 20
    escalate_after_s: float = 60.0
    escalation_levels: int = 3
    expire_after_s: float = 24 * 3600.0
    scheduler_interval_s: float = 0.5

    def next_delay_s(self, level: int) -> float:
        """Growing intervals: after level 1 wait twice the first delay, then four times..."""
        return float(self.escalate_after_s * 2**level)


def map_link(lat: float, lon: float) -> str:
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map=17/{lat:.5f}/{lon:.5f}"
    )


def _clock_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M UTC")


class SosService:
    def __init__(
        self,
        *,
        contacts: ContactRepository,
        alerts: SosRepository,
        users: UserRepository,
        deliveries: DeliveryRepository,
        presence: PresenceService,
        fanout: Fanout,
        clock: Clock,
        rules: SosRules,
        kick_deliveries: Callable[[], None],
        on_escalated: Callable[[int], None] = lambda level: None,
    ) -> None:
        self._contacts = contacts
        self._alerts = alerts
        self._users = users
        self._deliveries = deliveries
        self._presence = presence
        self._fanout = fanout
        self._clock = clock
        self._rules = rules
        self._kick = kick_deliveries
        self._on_escalated = on_escalated

    # -- contacts (REST) --------------------------------------------------------------------

    async def add_contact(
        self, owner_id: str, *, user_id: str | None, phone: str | None, name: str
    ) -> ContactRecord:
        if user_id is None and phone is None:
            raise Invalid("a contact needs a user_id or a phone")
        if phone is not None:
            phone = normalize_phone(phone)
        if user_id is not None:
            contact_user = as_uuid(user_id)
            if contact_user is None or await self._users.by_id(contact_user) is None:
                raise Invalid(f"unknown user id: {user_id}")
            if contact_user == owner_id:
                raise Invalid("you cannot be your own emergency contact")
            user_id = contact_user
        contact = await self._contacts.add(
            owner_id, user_id=user_id, name=name, phone=phone, limit=self._rules.max_contacts
        )
        if contact is None:
            if await self._contacts.count(owner_id) >= self._rules.max_contacts:
                raise Conflict(f"at most {self._rules.max_contacts} emergency contacts")
            raise Conflict("that user is already one of your contacts")
        return contact

    async def contacts(self, owner_id: str) -> list[ContactRecord]:
        return await self._contacts.of(owner_id)

    async def delete_contact(self, owner_id: str, contact_id: str) -> None:
        contact = as_uuid(contact_id)
        if contact is None or not await self._contacts.delete(owner_id, contact):
            raise NotFound("no such contact")

    # -- alerts -----------------------------------------------------------------------------

    async def raise_alert(
        self,
        user_id: str,
        sid: str | None,
        *,
        client_alert_id: str,
        lat: float,
        lon: float,
        accuracy_m: float | None,
        note: str | None,
    ) -> AlertRecord:
        raiser = await self._users.by_id(user_id)
        if raiser is None:
            raise Forbidden("unknown user")
        recipients = [
            Recipient(user_id=u, name=name, phone=phone)
            for u, name, phone in await self._contacts.recipients_of(user_id)
        ]
        contact_users = [r.user_id for r in recipients if r.user_id]
        connected = await self._presence.connected_among(contact_users)
        now = self._clock.now()
        alert_id = str(uuid.uuid4())
        where = map_link(lat, lon)
        owed: list[NewDelivery] = []
        audit: list[dict[str, Any]] = []
        for r in recipients:
            if r.user_id and r.user_id in connected:
                audit.append({"action": "sent", "channel": "socket", "to": r.user_id})
            elif r.user_id:
                owed.append(
                    NewDelivery(
                        source="sos",
                        source_id=alert_id,
                        channel="push",
                        user_id=r.user_id,
                        kind="sos",
                        title=f"SOS from {raiser.display_name}",
                        body=f"{raiser.display_name} needs help. Open Lifeline to see where.",
                        data={"alert_id": alert_id},  # the app reads where from the alert
                    )
                )
            elif r.phone:
                owed.append(
                    self._sms(
                        alert_id,
                        r.phone,
                        f"SOS from {raiser.display_name} at {_clock_time(now)}: {where}",
                    )
                )
        alert, created = await self._alerts.raise_alert(
            alert_id=alert_id,
            user_id=user_id,
            client_alert_id=client_alert_id,
            lat=lat,
            lon=lon,
            accuracy_m=accuracy_m,
            note=note,
            now=now,
            escalate_at=now + self._rules.escalate_after_s,
            expires_at=now + self._rules.expire_after_s,
            recipients=recipients,
            deliveries=owed,
            audit=audit,
        )
        if created:
            if owed:
                self._kick()
            await self._fanout.to_users(
                alert.audience,
                "sos:alert",
                {"alert": alert.public(), "user": raiser.public()},
                skip_sid=sid,
            )
        return alert

    async def location(
        self,
        user_id: str,
        sid: str | None,
        *,
        alert_id: str,
        lat: float,
        lon: float,
        accuracy_m: float | None,
    ) -> None:
        alert = await self._visible(user_id, alert_id)
        if alert.user_id != user_id:
            raise Forbidden("only the person who raised the alert sends its location")
        if alert.status in _CLOSED:
            raise Conflict(f"the alert is {alert.status}")
        at = self._clock.now()
        await self._alerts.add_location(alert.id, lat=lat, lon=lon, accuracy_m=accuracy_m, at=at)
        await self._fanout.to_users(
            alert.audience,
            "sos:location",
            {"alert_id": alert.id, "lat": lat, "lon": lon, "accuracy_m": accuracy_m, "at": iso(at)},
            skip_sid=sid,
        )

    async def acknowledge(self, user_id: str, alert_id: str) -> AlertRecord:
        alert = await self._visible(user_id, alert_id)
        if user_id not in alert.contact_user_ids:
            raise Forbidden("only the raiser's emergency contacts acknowledge an alert")
        if alert.status in _CLOSED:
            raise Conflict(f"the alert is {alert.status}")
        alert, _first = await self._alerts.acknowledge(alert.id, by=user_id, now=self._clock.now())
        await self._fanout.to_users(
            alert.audience, "sos:acknowledged", {"alert_id": alert.id, "by_user_id": user_id}
        )
        return alert

    async def resolve(self, user_id: str, alert_id: str) -> AlertRecord:
        alert = await self._visible(user_id, alert_id)
        if alert.status == "resolved":
            return alert  # a retry: already done
        closed = await self._alerts.close(
            alert.id, status="resolved", by=user_id, now=self._clock.now()
        )
        if closed is None:
            raise Conflict("the alert is expired")
        await self._fanout.to_users(
            closed.audience, "sos:resolved", {"alert_id": closed.id, "by_user_id": user_id}
        )
        return closed

    async def details(self, user_id: str, alert_id: str) -> dict[str, Any]:
        alert = await self._visible(user_id, alert_id)
        return {
            "alert": alert.public(),
            "trail": await self._alerts.trail(alert.id),
            "audit": await self._alerts.audit(alert.id),
            "deliveries": [
                {
                    **d,
                    "created_at": _iso_dt(d["created_at"]),
                    "finished_at": _iso_dt(d["finished_at"]),
                }
                for d in await self._deliveries.of_source("sos", alert.id)
            ],
        }

    # -- the scheduler ----------------------------------------------------------------------

    async def run(self) -> None:
        """Escalate and expire what is due, on every node, until cancelled."""
        while True:
            await asyncio.sleep(self._rules.scheduler_interval_s)
            try:
                await self.tick()
            except Exception:
                log.warning("SOS scheduler round failed; retrying", exc_info=True)

    async def tick(self) -> None:
        now = self._clock.now()
        escalated = await self._alerts.escalate_due(
            now=now,
            next_delay_s=self._rules.next_delay_s,
            max_levels=self._rules.escalation_levels,
            deliveries_for=self._escalation_sms,
        )
        if escalated:
            self._kick()
        for alert in escalated:
            self._on_escalated(alert.escalation_level)
            await self._fanout.to_users(
                alert.audience,
                "sos:escalated",
                {"alert_id": alert.id, "level": alert.escalation_level},
            )
        for alert in await self._alerts.expire_due(now=now):
            await self._fanout.to_users(alert.audience, "sos:expired", {"alert_id": alert.id})

    def _escalation_sms(self, alert: AlertRecord) -> list[NewDelivery]:
        lat = alert.last_lat if alert.last_lat is not None else alert.lat
        lon = alert.last_lon if alert.last_lon is not None else alert.lon
        text = (
            f"URGENT, nobody has answered yet: SOS from {alert.raiser_name} since "
            f"{alert.created_at.strftime('%H:%M UTC')}. Last position: {map_link(lat, lon)}"
        )
        return [self._sms(alert.id, r.phone, text) for r in alert.recipients if r.phone]

    @staticmethod
    def _sms(alert_id: str, phone: str, text: str) -> NewDelivery:
        return NewDelivery(
            source="sos",
            source_id=alert_id,
            channel="sms",
            address=phone,
            kind="sos",
            title="SOS",
            body=text,
            data={"alert_id": alert_id},
        )

    async def _visible(self, user_id: str, alert_id: str) -> AlertRecord:
        alert_uuid = as_uuid(alert_id)
        alert = None if alert_uuid is None else await self._alerts.get(alert_uuid)
        if alert is None or user_id not in alert.audience:
            raise Forbidden(_NOT_YOURS)
        return alert


def _iso_dt(value: datetime | None) -> str | None:
    return None if value is None else iso(value)
