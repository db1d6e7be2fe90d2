"""The outbox of SMS, push and email owed to people, with each one's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["Delivery", "DeliveryRepository", "NewDelivery"]


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _masked(address: str | None) -> str | None:
    """Enough of a phone number or email to tell them apart, not to use them."""
    if address is None:
        return None
    if "@" in address:
        name, _, domain = address.partition("@")
        return name[:1] + "•••@" + domain
    return address[:3] + "•" * max(0, len(address) - 7) + address[-4:]


@dataclass(frozen=True, slots=True)
class NewDelivery:
    source: str
    source_id: str
    channel: str
    kind: str
    title: str
    body: str
    user_id: str | None = None
    address: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # Not before this time (quiet hours); None: at once.
    not_before: float | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    source: str
    source_id: str
    channel: str
    user_id: str | None
    address: str | None
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    attempts: int


_COLUMNS = """id, source, source_id, channel, user_id::text AS user_id, address, kind, title,
              body, data, attempts"""


class DeliveryRepository:
    def __init__(self, pool: asyncpg.Pool, *, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    def _delivery(self, row: asyncpg.Record) -> Delivery:
        values = dict(row)
        values["data"] = orjson.loads(values["data"])
        values["address"] = self._cipher.decrypt(values["address"], "address")
        values["body"] = self._cipher.decrypt(values["body"], "body")
        return Delivery(**values)

    async def enqueue(self, conn: Queryable, deliveries: list[NewDelivery], *, now: float) -> None:
        """Add deliveries inside the caller's transaction: they exist iff it commits."""
        if not deliveries:
            return
        await conn.executemany(
            """INSERT INTO deliveries (source, source_id, channel, user_id, address, kind, title,
                                       body, data, next_attempt_at, created_at)
               VALUES ($1, $2, $3, $4::uuid, $5, $6, $7, $8, $9::jsonb, $10, $11)""",
            [
                (
                    d.source,
                    d.source_id,
                    d.channel,
                    d.user_id,
                    self._cipher.encrypt(d.address, "address"),
                    d.kind,
                    d.title,
                    self._cipher.encrypt(d.body, "body"),
                    orjson.dumps(d.data).decode(),
                    _ts(d.not_before if d.not_before is not None else now),
                    _ts(now),
                )
                for d in deliveries
            ],
        )

    async def claim(
        self, conn: Queryable, *, now: float, lease_s: float, limit: int
    ) -> list[Delivery]:
        """Take due deliveries for a lease; another node may take them when it runs out."""
        rows = await conn.fetch(
            f"""UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $2
                 WHERE id IN (SELECT id FROM deliveries
                               WHERE status = 'pending' AND next_attempt_at <= $1
                               ORDER BY next_attempt_at, id LIMIT $3
                                 FOR UPDATE SKIP LOCKED)
                RETURNING {_COLUMNS}""",
            _ts(now),
            _ts(now + lease_s),
            limit,
        )
        return sorted((self._delivery(r) for r in rows), key=lambda d: d.id)

    @staticmethod
    async def finish(
        conn: Queryable,
        delivery_id: int,
        *,
        status: str,
        result: str,
        now: float,
        ref: str | None = None,
    ) -> bool:
        """Record the final outcome; False if another node finished it first."""
        done = await conn.fetchval(
            """UPDATE deliveries SET status = $2, result = $3, finished_at = $4, provider_ref = $5
                WHERE id = $1 AND status = 'pending' RETURNING true""",
            delivery_id,
            status,
            result[:500],
            _ts(now),
            ref,
        )
        return bool(done)

    async def provider_receipt(
        self, conn: Queryable, ref: str, *, status: str, result: str
    ) -> Delivery | None:
        """What the provider later said of a message it accepted: ``delivered`` or
        ``failed``; the delivery, or None if no sent one has that reference."""
        row = await conn.fetchrow(
            f"""UPDATE deliveries SET status = $2, result = $3
                 WHERE provider_ref = $1 AND status IN ('sent', 'delivered')
                RETURNING {_COLUMNS}""",
            ref,
            status,
            result[:500],
        )
        return None if row is None else self._delivery(row)

    @staticmethod
    async def retry_at(conn: Queryable, delivery_id: int, *, at: float, result: str) -> None:
        await conn.execute(
            """UPDATE deliveries SET next_attempt_at = $2, result = $3
                WHERE id = $1 AND status = 'pending'""",
            delivery_id,
            _ts(at),
            result[:500],
        )

    async def counts(self, *, since: float) -> dict[str, dict[str, int]]:
        """{channel: {status: count}} of deliveries created since then."""
        rows = await self._pool.fetch(
            """SELECT channel, CASE WHEN status = 'pending' AND attempts > 0 THEN 'retrying'
                                    ELSE status END AS status, count(*) AS n
                 FROM deliveries WHERE created_at >= $1 GROUP BY 1, 2 ORDER BY 1, 2""",
            _ts(since),
        )
        found: dict[str, dict[str, int]] = {}
        for r in rows:
            found.setdefault(r["channel"], {})[r["status"]] = int(r["n"])
        return found

    async def of_source(self, source: str, source_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, channel, user_id::text AS user_id, address, kind, status, attempts,
                      result, created_at, finished_at
                 FROM deliveries WHERE source = $1 AND source_id = $2 ORDER BY id""",
            source,
            source_id,
        )
        return [
            {**dict(r), "address": _masked(self._cipher.decrypt(r["address"], "address"))}
            for r in rows
        ]
