"""Which incoming events were applied, and the outbox of events we produce."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from services.clock import iso
from storage.db import Queryable

__all__ = ["EventLog", "Outbox", "OutboxRecord"]


class EventLog:
    @staticmethod
    async def mark_applied(conn: Queryable, event_id: str, *, type_: str, source: str) -> bool:
        """Record the event inside the caller's transaction; False if it was applied before."""
        done = await conn.fetchval(
            """INSERT INTO applied_events (event_id, type, source) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            event_id,
            type_,
            source,
        )
        return bool(done)


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    id: int
    topic: str
    key: str | None
    value: bytes


class Outbox:
    """Events for Kafka, committed with what they report; a no-op without Kafka."""

    def __init__(self, *, topic: str, enabled: bool) -> None:
        self._topic = topic
        self.enabled = enabled

    async def add(
        self, conn: Queryable, type_: str, payload: dict[str, Any], *, key: str, now: float
    ) -> None:
        if not self.enabled:
            return
        envelope = {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "occurred_at": iso(now),
            "payload": payload,
        }
        await conn.execute(
            "INSERT INTO outbox (topic, key, value, created_at) VALUES ($1, $2, $3::jsonb, $4)",
            self._topic,
            key,
            orjson.dumps(envelope).decode(),
            datetime.fromtimestamp(now, UTC),
        )

    @staticmethod
    async def take_pending(conn: Queryable, *, limit: int = 200) -> list[OutboxRecord]:
        """The oldest unpublished events, locked for the caller's transaction (other
        nodes skip them): publish them, then ``mark_published`` before it commits."""
        rows = await conn.fetch(
            """SELECT id, topic, key, value::text AS value FROM outbox
                WHERE published_at IS NULL ORDER BY id LIMIT $1
                  FOR UPDATE SKIP LOCKED""",
            limit,
        )
        return [OutboxRecord(r["id"], r["topic"], r["key"], r["value"].encode()) for r in rows]

    @staticmethod
    async def mark_published(conn: Queryable, records: list[OutboxRecord]) -> None:
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [r.id for r in records],
        )
