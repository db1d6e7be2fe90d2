"""Notifications: stored per user, then delivered in-app and on the requested channels.

A notification is written with the deliveries it owes (push, SMS, email, each
after the user's preferences and quiet hours) and its ``notification.sent``
event in one transaction; once that commits, every socket of the user gets
``notification`` and the delivery worker is woken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.channels import IN_APP, ChannelRegistry, Person
from services.clock import Clock
from services.errors import Invalid
from services.ports import Fanout
from storage.archive import History
from storage.db import Database, Queryable
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.events import Outbox
from storage.notifications import NotificationRecord, NotificationRepository, Preferences
from storage.rooms import as_uuid

__all__ = ["DEFAULT_CHANNELS", "NotificationService", "Prepared", "parse_preferences"]

DEFAULT_CHANNELS = (IN_APP, "push")
# Kinds that reach people whatever their quiet hours say.
URGENT_KINDS = frozenset({"sos"})
MAX_RECIPIENTS = 10_000


@dataclass
class Prepared:
    """What a committed notification still has to do: tell the sockets."""

    records: list[NotificationRecord] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    in_app: bool = True
    owes_deliveries: bool = False


def quiet_until(prefs: Preferences, now: float) -> float | None:
    """When the user's quiet hours end, if ``now`` is inside them."""
    if prefs.quiet_start is None or prefs.quiet_end is None or prefs.quiet_start == prefs.quiet_end:
        return None
    zone = ZoneInfo(prefs.time_zone)
    local = datetime.fromtimestamp(now, zone)
    t = local.time()
    start, end = prefs.quiet_start, prefs.quiet_end
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    end_today = datetime.combine(local.date(), end, tzinfo=zone)
    if end_today <= local:
        end_today = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return end_today.astimezone(UTC).timestamp()


def parse_preferences(body: Any, channel_names: tuple[str, ...]) -> Preferences:
    """``{channels: {kind: {channel: bool}}, quiet_hours: {start, end} | null, time_zone}``."""
    if not isinstance(body, dict):
        raise Invalid("preferences must be a JSON object")
    channels_in = body.get("channels", {})
    if not isinstance(channels_in, dict) or len(channels_in) > 50:
        raise Invalid("channels must be an object of at most 50 kinds")
    channels: dict[str, dict[str, bool]] = {}
    for kind, switches in channels_in.items():
        if not isinstance(kind, str) or not 1 <= len(kind) <= 64 or not isinstance(switches, dict):
            raise Invalid("channels maps a kind to {channel: true|false}")
        for channel, on in switches.items():
            if channel not in channel_names or not isinstance(on, bool):
                raise Invalid(
                    f"channels of a kind are {', '.join(channel_names)}, each true or false"
                )
        channels[kind] = dict(switches)
    zone = body.get("time_zone", "UTC")
    if not isinstance(zone, str) or len(zone) > 64:
        raise Invalid("time_zone must be an IANA time zone such as Europe/Berlin")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time_zone {zone!r}") from None
    quiet = body.get("quiet_hours")
    start = end = None
    if quiet is not None:
        if not isinstance(quiet, dict):
            raise Invalid('quiet_hours must be {"start": "HH:MM", "end": "HH:MM"} or null')
        start, end = _hhmm(quiet.get("start")), _hhmm(quiet.get("end"))
    return Preferences(channels=channels, quiet_start=start, quiet_end=end, time_zone=zone)


def _hhmm(value: Any) -> time:
    try:
        if not isinstance(value, str) or len(value) != 5:
            raise ValueError
        return time.fromisoformat(value)
    except ValueError:
        raise Invalid("quiet hours are HH:MM") from None


class NotificationService:
    def __init__(
        self,
        *,
        db: Database,
        repo: NotificationRepository,
        deliveries: DeliveryRepository,
        outbox: Outbox,
        channels: ChannelRegistry,
        archive: History,
        fanout: Fanout,
        clock: Clock,
        kick_deliveries: Any,
    ) -> None:
        self._channels = channels
        self._archive = archive
        self._db = db
        self._repo = repo
        self._deliveries = deliveries
        self._outbox = outbox
        self._fanout = fanout
        self._clock = clock
        self._kick = kick_deliveries

    # -- creating -----------------------------------------------------------------------------

    async def request(
        self,
        user_ids: list[str],
        *,
        kind: str,
        title: str,
        body: str,
        data: dict[str, Any],
        channels: tuple[str, ...] = DEFAULT_CHANNELS,
    ) -> Prepared:
        """Store and deliver a notification on its own (the server API's POST /notifications)."""
        async with self._db.transaction() as conn:
            prepared = await self.prepare(
                conn, user_ids, kind=kind, title=title, body=body, data=data, channels=channels
            )
        await self.dispatch(prepared)
        return prepared

    async def prepare(
        self,
        conn: Queryable,
        user_ids: list[str],
        *,
        kind: str,
        title: str,
        body: str,
        data: dict[str, Any],
        channels: tuple[str, ...] = DEFAULT_CHANNELS,
    ) -> Prepared:
        """Write the notifications and what they owe inside the caller's transaction."""
        if len(user_ids) > MAX_RECIPIENTS:
            raise Invalid(f"at most {MAX_RECIPIENTS} user_ids")
        wanted = list(dict.fromkeys(user_ids))
        canonical = {u: as_uuid(u) for u in wanted}
        recipients = await self._repo.recipients([c for c in canonical.values() if c])
        known = [canonical[u] for u in wanted if canonical[u] in recipients]
        unknown = [u for u in wanted if canonical[u] not in recipients]
        prepared = Prepared(unknown=unknown, in_app=IN_APP in channels)
        if not known:
            return prepared
        now = self._clock.now()
        records = await NotificationRepository.create(
            conn,
            [u for u in known if u is not None],
            kind=kind,
            title=title,
            body=body,
            data=data,
            now=now,
        )
        owed: list[NewDelivery] = []
        for record in records:
            person = recipients[record.user_id]
            switches = person.preferences.channels.get(kind, {})
            later = None if kind in URGENT_KINDS else quiet_until(person.preferences, now)
            whom = Person(user_id=record.user_id, email=person.email, phone=person.phone)
            for channel in self._channels:
                if channel.name not in channels or not switches.get(channel.name, True):
                    continue
                owed.append(
                    NewDelivery(
                        source="notification",
                        source_id=record.id,
                        channel=channel.name,
                        user_id=record.user_id,
                        address=channel.address(whom),
                        kind=kind,
                        title=title,
                        body=body,
                        data={**data, "notification_id": record.id},
                        not_before=later,
                    )
                )
            await self._outbox.add(
                conn,
                "notification.sent",
                {
                    "notification_id": record.id,
                    "user_id": record.user_id,
                    "kind": kind,
                    "channels": [c for c in channels if switches.get(c, True)],
                },
                key=record.user_id,
                now=now,
            )
        await self._deliveries.enqueue(conn, owed, now=now)
        prepared.records = records
        prepared.owes_deliveries = bool(owed)
        return prepared

    async def dispatch(self, prepared: Prepared) -> None:
        """After commit: every socket of each recipient gets its notification."""
        if prepared.in_app:
            for record in prepared.records:
                await self._fanout.to_user(record.user_id, "notification", record.event())
        if prepared.owes_deliveries:
            self._kick()

    # -- reading ------------------------------------------------------------------------------

    async def of_user(
        self, user_id: str, *, unread_only: bool, limit: int | None
    ) -> list[NotificationRecord]:
        limit = min(limit or 50, 200)
        found = await self._repo.of_user(user_id, unread_only=unread_only, limit=limit)
        if len(found) < limit:  # older ones continue in the archive tier
            older = await self._archive.notifications_before(
                user_id,
                before=found[-1].created_at if found else None,
                unread_only=unread_only,
                limit=limit - len(found),
            )
            found += [
                NotificationRecord(
                    id=d["_id"],
                    user_id=d["user_id"],
                    kind=d["kind"],
                    title=d["title"],
                    body=d["body"],
                    data=d.get("data") or {},
                    created_at=d["created_at"],
                    read_at=d.get("read_at"),
                )
                for d in older
            ]
        return found

    async def mark_read(self, user_id: str, ids: list[str]) -> None:
        valid = [c for c in (as_uuid(i) for i in ids) if c is not None]
        if valid:
            await self._repo.mark_read(self._db, user_id, valid, now=self._clock.now())

    # -- devices and preferences ------------------------------------------------------------

    async def register_device(
        self, user_id: str, *, platform: str, push_token: str
    ) -> dict[str, Any]:
        return await self._repo.add_device(
            self._db, user_id, platform=platform, push_token=push_token
        )

    async def preferences(self, user_id: str) -> Preferences:
        return await self._repo.preferences(user_id)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return self._channels.names

    async def set_preferences(self, user_id: str, body: Any) -> Preferences:
        """Replace the user's preferences with those of a request body (checked here)."""
        prefs = parse_preferences(body, self._channels.names)
        await self._repo.set_preferences(self._db, user_id, prefs)
        return prefs
