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
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.events import Outbox

__all__ = ["AlertRecord", "Recipient", "SosRepository"]


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: str | None
    name: str
    phone: str | None


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

Point = tuple[float, float, float | None]


def _point_text(lat: float, lon: float, accuracy_m: float | None) -> str:
    return f"{lat!r},{lon!r},{'' if accuracy_m is None else repr(accuracy_m)}"


def _point(text: str) -> Point:
    lat, lon, accuracy = text.split(",")
    return float(lat), float(lon), float(accuracy) if accuracy else None


class SosRepository:
    """Positions and phone numbers are kept encrypted (storage/crypto.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        outbox: Outbox,
        cipher: FieldCipher,
        deliveries: DeliveryRepository,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._cipher = cipher
        self._deliveries = deliveries

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

    # -- reads ------------------------------------------------------------------------------

    async def _load(self, conn: Queryable, alert_id: str) -> AlertRecord | None:
        row = await conn.fetchrow(_ALERT + " WHERE a.id = $1::uuid", alert_id)
        if row is None:
            return None
        recipients = await conn.fetch(
            """SELECT user_id::text AS user_id, name, phone FROM sos_recipients
                WHERE alert_id = $1::uuid ORDER BY n""",
            alert_id,
        )
        return self._alert(
            row,
            [
                Recipient(r["user_id"], r["name"], self._cipher.decrypt(r["phone"], "phone"))
                for r in recipients
            ],
        )

    async def get(self, alert_id: str) -> AlertRecord | None:
        return await self._load(self._pool, alert_id)

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

    # -- writes -----------------------------------------------------------------------------

    async def raise_alert(
        self,
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
        recipients: list[Recipient],
        deliveries: list[NewDelivery],
        audit: list[dict[str, Any]],
    ) -> tuple[AlertRecord, bool]:
        """The alert and whether it is new: a retried ``client_alert_id`` finds the first."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
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
            if inserted is None:
                existing = await conn.fetchval(
                    """SELECT id::text FROM sos_alerts
                        WHERE user_id = $1::uuid AND client_alert_id = $2""",
                    user_id,
                    client_alert_id,
                )
                alert = await self._load(conn, existing)
                assert alert is not None
                return alert, False
            await conn.executemany(
                """INSERT INTO sos_recipients (alert_id, n, user_id, name, phone)
                   VALUES ($1::uuid, $2, $3::uuid, $4, $5)""",
                [
                    (alert_id, n, r.user_id, r.name, self._cipher.encrypt(r.phone, "phone"))
                    for n, r in enumerate(recipients)
                ],
            )
            await self._audit(conn, alert_id, now, user_id, "raised", {})
            for entry in audit:
                await self._audit(conn, alert_id, now, None, entry.pop("action"), entry)
            await self._deliveries.enqueue(conn, deliveries, now=now)
            alert = await self._load(conn, alert_id)
            assert alert is not None
            await self._event(conn, "sos.raised", alert, now)
        return alert, True

    async def add_location(
        self, alert_id: str, *, lat: float, lon: float, accuracy_m: float | None, at: float
    ) -> None:
        """Store a point; a later point within the same second replaces the earlier one."""
        await self._pool.execute(
            """INSERT INTO sos_locations (alert_id, second, position, at)
               VALUES ($1::uuid, $2, $3, $4)
               ON CONFLICT (alert_id, second) DO UPDATE
                  SET position = EXCLUDED.position, at = EXCLUDED.at""",
            alert_id,
            int(at),
            self._sealed(lat, lon, accuracy_m),
            _ts(at),
        )

    async def acknowledge(self, alert_id: str, *, by: str, now: float) -> tuple[AlertRecord, bool]:
        """Record an ack; the first one moves an active alert to acknowledged."""
        async with self._pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                """UPDATE sos_alerts SET status = 'acknowledged', acknowledged_at = $3,
                          acknowledged_by = $2::uuid, next_escalation_at = NULL
                    WHERE id = $1::uuid AND status = 'active' RETURNING true""",
                alert_id,
                by,
                _ts(now),
            )
            await self._audit(conn, alert_id, now, by, "acknowledged", {"first": bool(first)})
            alert = await self._load(conn, alert_id)
            assert alert is not None
            await self._event(conn, "sos.acknowledged", alert, now, by_user_id=by)
        return alert, bool(first)

    async def close(
        self, alert_id: str, *, status: str, by: str | None, now: float
    ) -> AlertRecord | None:
        """Resolve or expire an open alert; None if it was already closed."""
        async with self._pool.acquire() as conn, conn.transaction():
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
            if not done:
                return None
            await self._audit(conn, alert_id, now, by, status, {})
            alert = await self._load(conn, alert_id)
            assert alert is not None
            if status == "resolved":
                await self._event(conn, "sos.resolved", alert, now, by_user_id=by)
            return alert

    async def escalate_due(
        self,
        *,
        now: float,
        next_delay_s: Any,
        max_levels: int,
        deliveries_for: Any,
        limit: int = 20,
    ) -> list[AlertRecord]:
        """Take escalations due at ``now``, move each alert up a level, owe its SMS.

        Row locks with SKIP LOCKED let every node run this at once: each due
        level is taken by exactly one of them, and committed with the
        deliveries it owes before anything is sent.
        """
        escalated: list[AlertRecord] = []
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id::text AS id, escalation_level FROM sos_alerts
                    WHERE next_escalation_at <= $1 AND status = 'active'
                    ORDER BY next_escalation_at LIMIT $2
                      FOR UPDATE SKIP LOCKED""",
                _ts(now),
                limit,
            )
            for row in rows:
                level = row["escalation_level"] + 1
                following = None if level >= max_levels else now + next_delay_s(level)
                await conn.execute(
                    """UPDATE sos_alerts SET escalation_level = $2, next_escalation_at = $3
                        WHERE id = $1::uuid""",
                    row["id"],
                    level,
                    None if following is None else _ts(following),
                )
                alert = await self._load(conn, row["id"])
                assert alert is not None
                owed: list[NewDelivery] = deliveries_for(alert)
                await self._audit(
                    conn,
                    alert.id,
                    now,
                    None,
                    "escalated",
                    {"level": level, "sms_to": len([d for d in owed if d.channel == "sms"])},
                )
                await self._deliveries.enqueue(conn, owed, now=now)
                escalated.append(alert)
        return escalated

    async def expire_due(self, *, now: float, limit: int = 50) -> list[AlertRecord]:
        expired: list[AlertRecord] = []
        async with self._pool.acquire() as conn, conn.transaction():
            ids = await conn.fetch(
                """UPDATE sos_alerts SET status = 'expired', closed_at = $1,
                          next_escalation_at = NULL
                    WHERE id IN (SELECT id FROM sos_alerts
                                  WHERE status IN ('active', 'acknowledged') AND expires_at <= $1
                                  LIMIT $2 FOR UPDATE SKIP LOCKED)
                    RETURNING id::text""",
                _ts(now),
                limit,
            )
            for row in ids:
                await self._audit(conn, row["id"], now, None, "expired", {})
                alert = await self._load(conn, row["id"])
                assert alert is not None
                expired.append(alert)
        return expired

    async def open_alerts(self, limit: int = 500) -> list[dict[str, Any]]:
        """Active and acknowledged alerts with their newest position, newest first."""
        rows = await self._pool.fetch(
            _ALERT
            + """ WHERE a.status IN ('active', 'acknowledged')
                         ORDER BY a.created_at DESC LIMIT $1""",
            limit,
        )
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
                }
            )
        return found

    @staticmethod
    async def _audit(
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
