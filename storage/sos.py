"""SOS alerts: the alert, its recipients, trail, audit and due escalations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from services.clock import iso
from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["AlertRecord", "DueFallback", "Recipient", "RecipientChange", "SosRepository"]


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: str | None
    name: str
    phone: str | None
    contact_id: str | None = None
    n: int = 0
    reached_channel: str | None = None
    reached_at: datetime | None = None
    acknowledged_at: datetime | None = None
    failed: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "user_id": self.user_id,
            "name": self.name,
            "reached": None
            if self.reached_at is None
            else {"channel": self.reached_channel, "at": iso(self.reached_at)},
            "acknowledged_at": None if self.acknowledged_at is None else iso(self.acknowledged_at),
            "failed": self.failed,
        }


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: str
    user_id: str
    status: str
    lat: float
    lon: float
    accuracy_m: float | None
    note: str | None
    created_at: datetime
    acknowledged_by: str | None
    closed_by: str | None
    escalation_level: int
    raiser_name: str
    recipients: list[Recipient] = field(default_factory=list)
    # The newest known position: the raise point or the latest location.
    last_lat: float | None = None
    last_lon: float | None = None

    @property
    def contact_user_ids(self) -> list[str]:
        return [r.user_id for r in self.recipients if r.user_id]

    @property
    def audience(self) -> list[str]:
        """The raiser and every contact who is a user."""
        return [self.user_id, *self.contact_user_ids]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "status": self.status,
            "lat": self.lat,
            "lon": self.lon,
            "accuracy_m": self.accuracy_m,
            "note": self.note,
            "created_at": iso(self.created_at),
            "acknowledged_by": self.acknowledged_by,
            "closed_by": self.closed_by,
            "escalation_level": self.escalation_level,
        }


_ALERT = """SELECT a.id::text AS id, a.user_id::text AS user_id, a.status,
                   a.position, a.lat, a.lon, a.accuracy_m,
                   a.note, a.created_at, a.acknowledged_by::text AS acknowledged_by,
                   a.closed_by::text AS closed_by, a.escalation_level,
                   u.display_name AS raiser_name,
                   l.position AS last_position, l.lat AS last_lat, l.lon AS last_lon
              FROM sos_alerts a JOIN users u ON u.id = a.user_id
              LEFT JOIN LATERAL (SELECT position, lat, lon FROM sos_locations
                                  WHERE alert_id = a.id ORDER BY second DESC LIMIT 1) l ON true"""

_RECIPIENT = """n, contact_id::text AS contact_id, user_id::text AS user_id, name, phone,
                reached_channel, reached_at, acknowledged_at, failed"""

Point = tuple[float, float, float | None]


@dataclass(frozen=True, slots=True)
class RecipientChange:
    """A recipient whose state just moved: reached by a channel, or failed."""

    alert_id: str
    raiser_id: str
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class DueFallback:
    """A contact whose socket did not ack within the window: a push is owed now."""

    alert: AlertRecord
    recipient: Recipient


def _point_text(lat: float, lon: float, accuracy_m: float | None) -> str:
    return f"{lat!r},{lon!r},{'' if accuracy_m is None else repr(accuracy_m)}"


def _point(text: str) -> Point:
    lat, lon, accuracy = text.split(",")
    return float(lat), float(lon), float(accuracy) if accuracy else None


class SosRepository:
    """Positions and phone numbers are kept encrypted (storage/crypto.py)."""

    def __init__(self, pool: asyncpg.Pool, *, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    def _position(
        self,
        stored: str | None,
        lat: float | None,
        lon: float | None,
        accuracy_m: float | None = None,
    ) -> Point | None:
        text = self._cipher.decrypt(stored, "position")
        if text is not None:
            return _point(text)
        if lat is None or lon is None:
            return None
        return lat, lon, accuracy_m  # written before positions were encrypted

    def _sealed(self, lat: float, lon: float, accuracy_m: float | None) -> str | None:
        return self._cipher.encrypt(_point_text(lat, lon, accuracy_m), "position")

    def _alert(self, row: asyncpg.Record, recipients: list[Recipient]) -> AlertRecord:
        raised = self._position(row["position"], row["lat"], row["lon"], row["accuracy_m"])
        assert raised is not None
        last = self._position(row["last_position"], row["last_lat"], row["last_lon"]) or raised
        return AlertRecord(
            id=row["id"],
            user_id=row["user_id"],
            status=row["status"],
            lat=raised[0],
            lon=raised[1],
            accuracy_m=raised[2],
            note=row["note"],
            created_at=row["created_at"],
            acknowledged_by=row["acknowledged_by"],
            closed_by=row["closed_by"],
            escalation_level=row["escalation_level"],
            raiser_name=row["raiser_name"],
            recipients=recipients,
            last_lat=last[0],
            last_lon=last[1],
        )

    # -- reads ------------------------------------------------------------------------------

    async def _load(self, conn: Queryable, alert_id: str) -> AlertRecord | None:
        row = await conn.fetchrow(_ALERT + " WHERE a.id = $1::uuid", alert_id)
        if row is None:
            return None
        recipients = await conn.fetch(
            f"SELECT {_RECIPIENT} FROM sos_recipients WHERE alert_id = $1::uuid ORDER BY n",
            alert_id,
        )
        return self._alert(row, [self._recipient(r) for r in recipients])

    def _recipient(self, r: asyncpg.Record) -> Recipient:
        return Recipient(
            user_id=r["user_id"],
            name=r["name"],
            phone=self._cipher.decrypt(r["phone"], "phone"),
            contact_id=r["contact_id"],
            n=r["n"],
            reached_channel=r["reached_channel"],
            reached_at=r["reached_at"],
            acknowledged_at=r["acknowledged_at"],
            failed=r["failed"],
        )

    async def get(self, alert_id: str, conn: Queryable | None = None) -> AlertRecord | None:
        return await self._load(conn or self._pool, alert_id)

    async def trail(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT position, lat, lon, accuracy_m, created_at AS at, 0 AS o FROM sos_alerts
                WHERE id = $1::uuid
               UNION ALL
               SELECT position, lat, lon, accuracy_m, at, 1 FROM sos_locations
                WHERE alert_id = $1::uuid
               ORDER BY o, at""",
            alert_id,
        )
        trail = []
        for r in rows:
            point = self._position(r["position"], r["lat"], r["lon"], r["accuracy_m"])
            if point is not None:
                lat, lon, accuracy = point
                trail.append({"lat": lat, "lon": lon, "accuracy_m": accuracy, "at": iso(r["at"])})
        return trail

    async def audit(self, alert_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT at, actor_id::text AS actor_id, action, detail FROM sos_audit
                WHERE alert_id = $1::uuid ORDER BY id""",
            alert_id,
        )
        return [
            {
                "at": iso(r["at"]),
                "actor_id": r["actor_id"],
                "action": r["action"],
                **orjson.loads(r["detail"]),
            }
            for r in rows
        ]

    # -- writes, each inside the caller's transaction --------------------------------------

    async def insert_alert(
        self,
        conn: Queryable,
        *,
        alert_id: str,
        user_id: str,
        client_alert_id: str,
        lat: float,
        lon: float,
        accuracy_m: float | None,
        note: str | None,
        now: float,
        escalate_at: float | None,
        expires_at: float,
    ) -> str | None:
        """The new alert's id, or None if this ``client_alert_id`` was raised before."""
        inserted: str | None = await conn.fetchval(
            """INSERT INTO sos_alerts (id, user_id, client_alert_id, status, position,
                                       note, created_at, next_escalation_at, expires_at)
               VALUES ($1::uuid, $2::uuid, $3, 'active', $4, $5, $6, $7, $8)
               ON CONFLICT (user_id, client_alert_id) DO NOTHING
               RETURNING id::text""",
            alert_id,
            user_id,
            client_alert_id,
            self._sealed(lat, lon, accuracy_m),
            note,
            _ts(now),
            None if escalate_at is None else _ts(escalate_at),
            _ts(expires_at),
        )
        return inserted

    async def raised_before(
        self, conn: Queryable, user_id: str, client_alert_id: str
    ) -> AlertRecord | None:
        existing = await conn.fetchval(
            "SELECT id::text FROM sos_alerts WHERE user_id = $1::uuid AND client_alert_id = $2",
            user_id,
            client_alert_id,
        )
        return None if existing is None else await self._load(conn, existing)

    async def insert_recipients(
        self,
        conn: Queryable,
        alert_id: str,
        recipients: list[Recipient],
        fallback_at: dict[int, float],
    ) -> None:
        """Who the alert goes to; ``fallback_at`` maps a recipient's ``n`` to when its
        socket-ack window closes."""
        await conn.executemany(
            """INSERT INTO sos_recipients (alert_id, n, contact_id, user_id, name, phone,
                                           fallback_at)
               VALUES ($1::uuid, $2, $3::uuid, $4::uuid, $5, $6, $7)""",
            [
                (
                    alert_id,
                    r.n,
                    r.contact_id,
                    r.user_id,
                    r.name,
                    self._cipher.encrypt(r.phone, "phone"),
                    _ts(fallback_at[r.n]) if r.n in fallback_at else None,
                )
                for r in recipients
            ],
        )

    async def add_location(
        self,
        conn: Queryable,
        alert_id: str,
        *,
        lat: float,
        lon: float,
        accuracy_m: float | None,
        at: float,
    ) -> None:
        """Store a point; a later point within the same second replaces the earlier one."""
        await conn.execute(
            """INSERT INTO sos_locations (alert_id, second, position, at)
               VALUES ($1::uuid, $2, $3, $4)
               ON CONFLICT (alert_id, second) DO UPDATE
                  SET position = EXCLUDED.position, at = EXCLUDED.at""",
            alert_id,
            int(at),
            self._sealed(lat, lon, accuracy_m),
            _ts(at),
        )

    @staticmethod
    async def acknowledge(conn: Queryable, alert_id: str, *, by: str, now: float) -> bool:
        """Record a contact's ack; True if it is the first (the alert moves to acknowledged)."""
        first = await conn.fetchval(
            """UPDATE sos_alerts SET status = 'acknowledged', acknowledged_at = $3,
                      acknowledged_by = $2::uuid, next_escalation_at = NULL
                WHERE id = $1::uuid AND status = 'active' RETURNING true""",
            alert_id,
            by,
            _ts(now),
        )
        await conn.execute(
            """UPDATE sos_recipients SET acknowledged_at = COALESCE(acknowledged_at, $3)
                WHERE alert_id = $1::uuid AND user_id = $2::uuid""",
            alert_id,
            by,
            _ts(now),
        )
        return bool(first)

    @staticmethod
    async def close(
        conn: Queryable, alert_id: str, *, status: str, by: str | None, now: float
    ) -> bool:
        """Resolve or expire an open alert; False if it was already closed."""
        done = await conn.fetchval(
            """UPDATE sos_alerts SET status = $2, closed_at = $4, closed_by = $3::uuid,
                      next_escalation_at = NULL
                WHERE id = $1::uuid AND status IN ('active', 'acknowledged')
                RETURNING true""",
            alert_id,
            status,
            by,
            _ts(now),
        )
        if done:
            await conn.execute(
                "UPDATE sos_recipients SET fallback_at = NULL WHERE alert_id = $1::uuid",
                alert_id,
            )
        return bool(done)

    @staticmethod
    async def take_due_escalations(
        conn: Queryable, *, now: float, limit: int
    ) -> list[tuple[str, int]]:
        """(alert id, level reached so far) of alerts due to escalate, locked for this
        transaction; other nodes skip them (each level is taken once)."""
        rows = await conn.fetch(
            """SELECT id::text AS id, escalation_level FROM sos_alerts
                WHERE next_escalation_at <= $1 AND status = 'active'
                ORDER BY next_escalation_at LIMIT $2
                  FOR UPDATE SKIP LOCKED""",
            _ts(now),
            limit,
        )
        return [(r["id"], r["escalation_level"]) for r in rows]

    @staticmethod
    async def set_level(
        conn: Queryable, alert_id: str, *, level: int, next_at: float | None
    ) -> None:
        await conn.execute(
            """UPDATE sos_alerts SET escalation_level = $2, next_escalation_at = $3
                WHERE id = $1::uuid""",
            alert_id,
            level,
            None if next_at is None else _ts(next_at),
        )

    @staticmethod
    async def take_due_expiries(conn: Queryable, *, now: float, limit: int) -> list[str]:
        rows = await conn.fetch(
            """UPDATE sos_alerts SET status = 'expired', closed_at = $1,
                      next_escalation_at = NULL
                WHERE id IN (SELECT id FROM sos_alerts
                              WHERE status IN ('active', 'acknowledged') AND expires_at <= $1
                              LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING id::text""",
            _ts(now),
            limit,
        )
        ids = [r["id"] for r in rows]
        if ids:
            await conn.execute(
                "UPDATE sos_recipients SET fallback_at = NULL WHERE alert_id = ANY($1::uuid[])",
                ids,
            )
        return ids

    async def take_due_fallbacks(
        self, conn: Queryable, *, now: float, limit: int
    ) -> list[DueFallback]:
        """Contacts whose socket-ack window closed unreached, taken (the timer cleared)
        under row locks that other nodes skip."""
        rows = await conn.fetch(
            f"""UPDATE sos_recipients r SET fallback_at = NULL
                 WHERE (r.alert_id, r.n) IN (
                       SELECT alert_id, n FROM sos_recipients
                        WHERE fallback_at <= $1 ORDER BY fallback_at LIMIT $2
                          FOR UPDATE SKIP LOCKED)
                RETURNING r.alert_id::text AS alert_id, {_prefixed("r")}""",
            _ts(now),
            limit,
        )
        due: list[DueFallback] = []
        for row in rows:
            if row["reached_at"] is not None:
                continue  # an ack won the race with the timer
            alert = await self._load(conn, row["alert_id"])
            if alert is not None and alert.status in ("active", "acknowledged"):
                due.append(DueFallback(alert, self._recipient(row)))
        return due

    async def mark_reached(
        self,
        conn: Queryable,
        alert_id: str,
        *,
        channel: str,
        now: float,
        user_id: str | None = None,
        n: int | None = None,
    ) -> list[RecipientChange]:
        """Recipients (by user, or by index) reached for the first time by ``channel``."""
        rows = await conn.fetch(
            f"""UPDATE sos_recipients r
                   SET reached_channel = $2, reached_at = $3, failed = NULL, fallback_at = NULL
                  FROM sos_alerts a
                 WHERE r.alert_id = $1::uuid AND a.id = r.alert_id AND r.reached_at IS NULL
                   AND (($4::uuid IS NOT NULL AND r.user_id = $4::uuid) OR r.n = $5)
             RETURNING a.user_id::text AS raiser_id, {_prefixed("r")}""",
            alert_id,
            channel,
            _ts(now),
            user_id,
            n,
        )
        return [RecipientChange(alert_id, r["raiser_id"], self._recipient(r)) for r in rows]

    async def mark_failed(
        self, conn: Queryable, alert_id: str, *, n: int, reason: str
    ) -> list[RecipientChange]:
        """A recipient nothing reached: why, unless something reached them meanwhile."""
        rows = await conn.fetch(
            f"""UPDATE sos_recipients r SET failed = $3
                  FROM sos_alerts a
                 WHERE r.alert_id = $1::uuid AND a.id = r.alert_id AND r.n = $2
                   AND r.reached_at IS NULL
             RETURNING a.user_id::text AS raiser_id, {_prefixed("r")}""",
            alert_id,
            n,
            reason[:200],
        )
        return [RecipientChange(alert_id, r["raiser_id"], self._recipient(r)) for r in rows]

    async def unreach(
        self, conn: Queryable, alert_id: str, *, n: int, channel: str, reason: str
    ) -> list[RecipientChange]:
        """A provider took back what counted as reaching someone (an SMS undelivered)."""
        rows = await conn.fetch(
            f"""UPDATE sos_recipients r
                   SET reached_channel = NULL, reached_at = NULL, failed = $4
                  FROM sos_alerts a
                 WHERE r.alert_id = $1::uuid AND a.id = r.alert_id AND r.n = $2
                   AND r.reached_channel = $3
             RETURNING a.user_id::text AS raiser_id, {_prefixed("r")}""",
            alert_id,
            n,
            channel,
            reason[:200],
        )
        return [RecipientChange(alert_id, r["raiser_id"], self._recipient(r)) for r in rows]

    # -- lists ------------------------------------------------------------------------------

    async def of_user(
        self, user_id: str, *, open_only: bool, limit: int
    ) -> list[tuple[AlertRecord, str]]:
        """Alerts this user raised or is a contact of, newest first, with the role."""
        rows = await self._pool.fetch(
            """SELECT DISTINCT a.id::text AS id, a.created_at,
                      CASE WHEN a.user_id = $1::uuid THEN 'raiser' ELSE 'contact' END AS role
                 FROM sos_alerts a LEFT JOIN sos_recipients r
                   ON r.alert_id = a.id AND r.user_id = $1::uuid
                WHERE (a.user_id = $1::uuid OR r.user_id IS NOT NULL)
                  AND (NOT $2 OR a.status IN ('active', 'acknowledged'))
                ORDER BY a.created_at DESC, id DESC LIMIT $3""",
            user_id,
            open_only,
            limit,
        )
        found: list[tuple[AlertRecord, str]] = []
        for row in rows:
            alert = await self._load(self._pool, row["id"])
            if alert is not None:
                found.append((alert, row["role"]))
        return found

    async def open_for_contact(self, user_id: str, *, limit: int = 50) -> list[AlertRecord]:
        """Open alerts this user is a contact of (not their own), oldest first."""
        ids = await self._pool.fetch(
            """SELECT DISTINCT a.id::text AS id, a.created_at FROM sos_alerts a
                 JOIN sos_recipients r ON r.alert_id = a.id
                WHERE r.user_id = $1::uuid AND a.user_id <> $1::uuid
                  AND a.status IN ('active', 'acknowledged')
                ORDER BY a.created_at LIMIT $2""",
            user_id,
            limit,
        )
        found = [await self._load(self._pool, r["id"]) for r in ids]
        return [a for a in found if a is not None]

    async def open_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        """Active and acknowledged alerts with their newest position, newest first."""
        rows = await self._pool.fetch(
            _ALERT
            + """ WHERE a.status IN ('active', 'acknowledged')
                         ORDER BY a.created_at DESC LIMIT $1""",
            limit,
        )
        recipients: dict[str, list[dict[str, Any]]] = {}
        for r in await self._pool.fetch(
            f"""SELECT alert_id::text AS alert_id, {_RECIPIENT} FROM sos_recipients
                 WHERE alert_id = ANY($1::uuid[]) ORDER BY alert_id, n""",
            [r["id"] for r in rows],
        ):
            recipients.setdefault(r["alert_id"], []).append(self._recipient(r).public())
        found = []
        for r in rows:
            alert = self._alert(r, [])
            found.append(
                {
                    "id": alert.id,
                    "user_id": alert.user_id,
                    "display_name": alert.raiser_name,
                    "status": alert.status,
                    "escalation_level": alert.escalation_level,
                    "lat": alert.last_lat,
                    "lon": alert.last_lon,
                    "created_at": iso(alert.created_at),
                    "recipients": recipients.get(alert.id, []),
                }
            )
        return found

    @staticmethod
    async def audit_entry(
        conn: Queryable,
        alert_id: str,
        now: float,
        actor_id: str | None,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        await conn.execute(
            """INSERT INTO sos_audit (alert_id, at, actor_id, action, detail)
               VALUES ($1::uuid, $2, $3::uuid, $4, $5::jsonb)""",
            alert_id,
            _ts(now),
            actor_id,
            action,
            orjson.dumps(detail).decode(),
        )


def _prefixed(table: str) -> str:
    return ", ".join(f"{table}.{c.strip()}" for c in _RECIPIENT.replace("\n", " ").split(","))
