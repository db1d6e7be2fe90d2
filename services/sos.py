"""SOS: raise an alert to every emergency contact at once, follow, escalate, close.

Rules that live here: only the raiser moves the trail, only contacts
acknowledge, the raiser or a contact resolves; everything is committed
(with the SMS and pushes it owes) in one transaction this service opens,
before it is acked or sent; escalation, expiry and each contact's
socket-ack window are timers in PostgreSQL that whichever node is alive takes.

Receipts, not presence: ``sos:alert`` and ``sos:escalated`` ask each contact's
sockets for an ack. A contact is *reached* when a socket of theirs acks or a
provider accepts their push or SMS. One who has no socket gets a push at
once; one whose sockets stay silent for ``socket_ack_s`` gets it then; when
no push could go out, an SMS follows if they have a phone. The raiser's
sockets hear ``sos:delivery`` as each contact is reached or fails.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.auth import normalize_phone
from services.channels import DeliveryOutcome
from services.clock import Clock, iso
from services.errors import Conflict, Forbidden, Invalid, NotFound
from services.ports import Fanout
from services.presence import PresenceService
from storage.contacts import ContactRecord, ContactRepository
from storage.db import Database, Queryable
from storage.deliveries import Delivery, DeliveryRepository, NewDelivery
from storage.events import Outbox
from storage.rooms import as_uuid
from storage.sos import AlertRecord, Recipient, RecipientChange, SosRepository
from storage.users import UserRecord, UserRepository

__all__ = ["SosRules", "SosService"]

log = logging.getLogger(__name__)

_NOT_YOURS = "you neither raised this alert nor are a contact of its raiser"
_CLOSED = ("resolved", "expired")
# What a socket ack is a receipt for (services/ports.py ``Fanout.ask_users``).
RECEIPT = "sos"
MAX_LIST = 200

AfterCommit = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SosRules:
    max_contacts: int = 20
    escalate_after_s: float = 60.0
    escalation_levels: int = 3
    expire_after_s: float = 24 * 3600.0
    scheduler_interval_s: float = 0.5
    # How long a contact's sockets have to ack sos:alert before a push goes out.
    socket_ack_s: float = 5.0

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
        db: Database,
        contacts: ContactRepository,
        alerts: SosRepository,
        users: UserRepository,
        deliveries: DeliveryRepository,
        outbox: Outbox,
        presence: PresenceService,
        fanout: Fanout,
        clock: Clock,
        rules: SosRules,
        kick_deliveries: Callable[[], None],
        on_escalated: Callable[[int], None] = lambda level: None,
    ) -> None:
        self._db = db
        self._contacts = contacts
        self._alerts = alerts
        self._users = users
        self._deliveries = deliveries
        self._outbox = outbox
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
                raise NotFound(f"no such user: {user_id}")
            if contact_user == owner_id:
                raise Invalid("you cannot be your own emergency contact")
            user_id = contact_user
        async with self._db.transaction() as conn:
            contact = await self._contacts.add(
                conn,
                owner_id,
                user_id=user_id,
                name=name,
                phone=phone,
                limit=self._rules.max_contacts,
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
        if contact is None or not await self._contacts.delete(self._db, owner_id, contact):
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
            Recipient(user_id=u, name=name, phone=phone, contact_id=contact_id, n=n)
            for n, (contact_id, u, name, phone) in enumerate(
                await self._contacts.recipients_of(user_id)
            )
        ]
        connected = await self._presence.connected_among(r.user_id for r in recipients if r.user_id)
        now = self._clock.now()
        alert_id = str(uuid.uuid4())
        owed: list[NewDelivery] = []
        sent: list[dict[str, Any]] = []
        fallback_at: dict[int, float] = {}
        sms_text = f"SOS from {raiser.display_name} at {_clock_time(now)}: {map_link(lat, lon)}"
        for r in recipients:
            if r.user_id and r.user_id in connected:
                # Its sockets are asked for a receipt; silence past the window owes a push.
                sent.append({"channel": "socket", "to": r.user_id})
                fallback_at[r.n] = now + self._rules.socket_ack_s
            elif r.user_id:
                owed.append(self._push(alert_id, r, raiser.display_name, stage="raise"))
            elif r.phone:
                owed.append(self._sms(alert_id, r, sms_text, stage="raise"))
        async with self._db.transaction() as conn:
            inserted = await self._alerts.insert_alert(
                conn,
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
            )
            if inserted is None:  # a retry: the first alert, nothing new sent
                first = await self._alerts.raised_before(conn, user_id, client_alert_id)
                assert first is not None
                return first
            await self._alerts.insert_recipients(conn, alert_id, recipients, fallback_at)
            await self._alerts.audit_entry(conn, alert_id, now, user_id, "raised", {})
            for entry in sent:
                await self._alerts.audit_entry(conn, alert_id, now, None, "sent", entry)
            await self._deliveries.enqueue(conn, owed, now=now)
            alert = await self._alerts.get(alert_id, conn)
            assert alert is not None
            await self._event(conn, "sos.raised", alert, now)
        if owed:
            self._kick()
        await self._announce(alert, raiser, "sos:alert", {}, skip_sid=sid)
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
        async with self._db.transaction() as conn:
            await self._alerts.add_location(
                conn, alert.id, lat=lat, lon=lon, accuracy_m=accuracy_m, at=at
            )
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
        now = self._clock.now()
        async with self._db.transaction() as conn:
            first = await self._alerts.acknowledge(conn, alert.id, by=user_id, now=now)
            # Acknowledging is the plainest receipt there is.
            reached = await self._alerts.mark_reached(
                conn, alert.id, channel="socket", now=now, user_id=user_id
            )
            await self._alerts.audit_entry(
                conn, alert.id, now, user_id, "acknowledged", {"first": first}
            )
            acked = await self._alerts.get(alert.id, conn)
            assert acked is not None
            await self._event(conn, "sos.acknowledged", acked, now, by_user_id=user_id)
        await self._fanout.to_users(
            acked.audience, "sos:acknowledged", {"alert_id": acked.id, "by_user_id": user_id}
        )
        await self._tell_raiser(reached, "reached", now)
        return acked

    async def resolve(self, user_id: str, alert_id: str) -> AlertRecord:
        alert = await self._visible(user_id, alert_id)
        if alert.status == "resolved":
            return alert  # a retry: already done
        now = self._clock.now()
        async with self._db.transaction() as conn:
            if not await self._alerts.close(conn, alert.id, status="resolved", by=user_id, now=now):
                raise Conflict("the alert is expired")
            await self._alerts.audit_entry(conn, alert.id, now, user_id, "resolved", {})
            closed = await self._alerts.get(alert.id, conn)
            assert closed is not None
            await self._event(conn, "sos.resolved", closed, now, by_user_id=user_id)
        await self._fanout.to_users(
            closed.audience, "sos:resolved", {"alert_id": closed.id, "by_user_id": user_id}
        )
        return closed

    async def details(self, user_id: str, alert_id: str) -> dict[str, Any]:
        alert = await self._visible(user_id, alert_id)
        return {
            "alert": alert.public(),
            "trail": await self._alerts.trail(alert.id),
            "recipients": [r.public() for r in alert.recipients],
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

    async def alerts_of(
        self, user_id: str, *, status: str, limit: int | None
    ) -> list[dict[str, Any]]:
        """``GET /sos``: what the user raised or is a contact of, newest first."""
        if status not in ("open", "all"):
            raise Invalid("status must be open or all")
        if limit is not None and limit < 1:
            raise Invalid("limit must be at least 1")
        found = await self._alerts.of_user(
            user_id, open_only=status == "open", limit=min(limit or 50, MAX_LIST)
        )
        raisers: dict[str, UserRecord | None] = {}
        listed = []
        for alert, role in found:
            if alert.user_id not in raisers:
                raisers[alert.user_id] = await self._users.by_id(alert.user_id)
            raiser = raisers[alert.user_id]
            listed.append(
                {
                    "alert": alert.public(),
                    "user": None if raiser is None else raiser.public(),
                    "role": role,
                }
            )
        return listed

    # -- receipts ---------------------------------------------------------------------------

    async def socket_acked(self, alert_id: str, user_id: str) -> None:
        """A socket of ``user_id`` acked an alert event: they are reached (once)."""
        now = self._clock.now()
        async with self._db.transaction() as conn:
            reached = await self._alerts.mark_reached(
                conn, alert_id, channel="socket", now=now, user_id=user_id
            )
        await self._tell_raiser(reached, "reached", now)

    async def contact_connected(self, sid: str, user_id: str) -> None:
        """A contact's new socket hears every open alert again, asked for a receipt."""
        for alert in await self._alerts.open_for_contact(user_id):
            raiser = await self._users.by_id(alert.user_id)
            if raiser is None:
                continue
            await self._fanout.ask_socket(
                sid,
                "sos:alert",
                {"alert": alert.public(), "user": raiser.public()},
                receipt=(RECEIPT, alert.id),
            )

    async def delivery_finished(
        self, conn: Queryable, delivery: Delivery, outcome: DeliveryOutcome
    ) -> AfterCommit | None:
        """The final outcome of an SOS push or SMS, inside the transaction recording it."""
        alert_id = delivery.data.get("alert_id")
        n = delivery.data.get("recipient")
        if not isinstance(alert_id, str) or not isinstance(n, int):
            return None  # written before receipts were kept
        now = self._clock.now()
        if outcome.status == "sent":
            reached = await self._alerts.mark_reached(
                conn, alert_id, channel=delivery.channel, now=now, n=n
            )
            return self._after_change(reached, "reached", now)
        if delivery.channel == "push" and delivery.data.get("stage") != "escalation":
            sms = await self._sms_fallback(conn, alert_id, n, now)
            if sms:
                return self._after_kick()
        if delivery.channel == "sms":
            await self._alerts.unreach(
                conn, alert_id, n=n, channel="sms", reason=f"sms: {outcome.detail}"
            )
        failed = await self._alerts.mark_failed(
            conn, alert_id, n=n, reason=f"{delivery.channel}: {outcome.detail or outcome.status}"
        )
        return self._after_change(failed, "failed", now)

    async def _sms_fallback(self, conn: Queryable, alert_id: str, n: int, now: float) -> bool:
        """No push could go out: an SMS instead, when the contact has a phone."""
        alert = await self._alerts.get(alert_id, conn)
        if alert is None or alert.status in _CLOSED:
            return False
        recipient = next((r for r in alert.recipients if r.n == n), None)
        if recipient is None or not recipient.phone:
            return False
        lat = alert.last_lat if alert.last_lat is not None else alert.lat
        lon = alert.last_lon if alert.last_lon is not None else alert.lon
        text = (
            f"SOS from {alert.raiser_name} since {alert.created_at.strftime('%H:%M UTC')}: "
            f"{map_link(lat, lon)}"
        )
        await self._deliveries.enqueue(
            conn, [self._sms(alert_id, recipient, text, stage="fallback")], now=now
        )
        return True

    def _after_change(self, changes: list[RecipientChange], status: str, now: float) -> AfterCommit:
        async def tell() -> None:
            await self._tell_raiser(changes, status, now)

        return tell

    def _after_kick(self) -> AfterCommit:
        async def kick() -> None:
            self._kick()

        return kick

    async def _tell_raiser(self, changes: list[RecipientChange], status: str, now: float) -> None:
        for change in changes:
            r = change.recipient
            channel = r.reached_channel if status == "reached" else (r.failed or "").split(":")[0]
            await self._fanout.to_user(
                change.raiser_id,
                "sos:delivery",
                {
                    "alert_id": change.alert_id,
                    "contact_id": r.contact_id,
                    "user_id": r.user_id,
                    "channel": channel,
                    "status": status,
                    "at": iso(now),
                },
            )

    async def _announce(
        self,
        alert: AlertRecord,
        raiser: UserRecord | None,
        event: str,
        data: dict[str, Any],
        *,
        skip_sid: str | None = None,
    ) -> None:
        """The raiser's sockets hear it; the contacts' are asked for a receipt."""
        payload = data or {
            "alert": alert.public(),
            "user": None if raiser is None else raiser.public(),
        }
        await self._fanout.to_users([alert.user_id], event, payload, skip_sid=skip_sid)
        if alert.contact_user_ids:
            await self._fanout.ask_users(
                alert.contact_user_ids, event, payload, receipt=(RECEIPT, alert.id)
            )

    # -- the scheduler ----------------------------------------------------------------------

    async def run(self) -> None:
        """Fallbacks, escalations and expiries that are due, on every node, until cancelled."""
        while True:
            await asyncio.sleep(self._rules.scheduler_interval_s)
            try:
                await self.tick()
            except Exception:
                log.warning("SOS scheduler round failed; retrying", exc_info=True)

    async def tick(self) -> None:
        now = self._clock.now()
        await self._fallbacks(now)
        await self._escalations(now)
        await self._expiries(now)

    async def _fallbacks(self, now: float) -> None:
        async with self._db.transaction() as conn:
            due = await self._alerts.take_due_fallbacks(conn, now=now, limit=100)
            owed = [
                self._push(d.alert.id, d.recipient, d.alert.raiser_name, stage="fallback")
                for d in due
            ]
            for d in due:
                await self._alerts.audit_entry(
                    conn,
                    d.alert.id,
                    now,
                    None,
                    "sent",
                    {"channel": "push", "to": d.recipient.user_id, "why": "no socket ack"},
                )
            await self._deliveries.enqueue(conn, owed, now=now)
        if owed:
            self._kick()

    async def _escalations(self, now: float) -> None:
        escalated: list[AlertRecord] = []
        async with self._db.transaction() as conn:
            for alert_id, level in await self._alerts.take_due_escalations(conn, now=now, limit=20):
                level += 1
                following = (
                    None
                    if level >= self._rules.escalation_levels
                    else now + self._rules.next_delay_s(level)
                )
                await self._alerts.set_level(conn, alert_id, level=level, next_at=following)
                alert = await self._alerts.get(alert_id, conn)
                assert alert is not None
                owed = self._escalation_owed(alert)
                await self._alerts.audit_entry(
                    conn,
                    alert.id,
                    now,
                    None,
                    "escalated",
                    {
                        "level": level,
                        "sms_to": sum(1 for d in owed if d.channel == "sms"),
                        "push_to": sum(1 for d in owed if d.channel == "push"),
                    },
                )
                await self._deliveries.enqueue(conn, owed, now=now)
                escalated.append(alert)
        if escalated:
            self._kick()
        for alert in escalated:
            self._on_escalated(alert.escalation_level)
            await self._announce(
                alert,
                None,
                "sos:escalated",
                {"alert_id": alert.id, "level": alert.escalation_level},
            )

    async def _expiries(self, now: float) -> None:
        expired: list[AlertRecord] = []
        async with self._db.transaction() as conn:
            for alert_id in await self._alerts.take_due_expiries(conn, now=now, limit=50):
                await self._alerts.audit_entry(conn, alert_id, now, None, "expired", {})
                alert = await self._alerts.get(alert_id, conn)
                if alert is not None:
                    expired.append(alert)
        for alert in expired:
            await self._fanout.to_users(alert.audience, "sos:expired", {"alert_id": alert.id})

    def _escalation_owed(self, alert: AlertRecord) -> list[NewDelivery]:
        """Every contact not yet acknowledging: a push to users, an SMS to phones."""
        lat = alert.last_lat if alert.last_lat is not None else alert.lat
        lon = alert.last_lon if alert.last_lon is not None else alert.lon
        text = (
            f"URGENT, nobody has answered yet: SOS from {alert.raiser_name} since "
            f"{alert.created_at.strftime('%H:%M UTC')}. Last position: {map_link(lat, lon)}"
        )
        owed: list[NewDelivery] = []
        for r in alert.recipients:
            if r.acknowledged_at is not None:
                continue
            if r.user_id:
                owed.append(self._push(alert.id, r, alert.raiser_name, stage="escalation"))
            if r.phone:
                owed.append(self._sms(alert.id, r, text, stage="escalation"))
        return owed

    @staticmethod
    def _push(alert_id: str, r: Recipient, raiser_name: str, *, stage: str) -> NewDelivery:
        return NewDelivery(
            source="sos",
            source_id=alert_id,
            channel="push",
            user_id=r.user_id,
            kind="sos",
            title=f"SOS from {raiser_name}",
            body=f"{raiser_name} needs help. Open Lifeline to see where.",
            # The app reads where from the alert; recipient and stage are for receipts.
            data={"alert_id": alert_id, "recipient": r.n, "stage": stage},
        )

    @staticmethod
    def _sms(alert_id: str, r: Recipient, text: str, *, stage: str) -> NewDelivery:
        return NewDelivery(
            source="sos",
            source_id=alert_id,
            channel="sms",
            address=r.phone,
            kind="sos",
            title="SOS",
            body=text,
            data={"alert_id": alert_id, "recipient": r.n, "stage": stage},
        )

    async def _event(
        self, conn: Queryable, type_: str, alert: AlertRecord, now: float, **extra: Any
    ) -> None:
        await self._outbox.add(
            conn,
            type_,
            {"alert_id": alert.id, "user_id": alert.user_id, "status": alert.status, **extra},
            key=alert.user_id,
            now=now,
        )

    async def _visible(self, user_id: str, alert_id: str) -> AlertRecord:
        alert_uuid = as_uuid(alert_id)
        alert = None if alert_uuid is None else await self._alerts.get(alert_uuid)
        if alert is None or user_id not in alert.audience:
            raise Forbidden(_NOT_YOURS)
        return alert


def _iso_dt(value: datetime | None) -> str | None:
    return None if value is None else iso(value)
