"""What the archive mover takes from PostgreSQL: rows past the hot window, in batches.

Each batch is locked (``FOR UPDATE SKIP LOCKED``, so movers on several nodes
never take the same rows) inside the mover's transaction, and deleted in it
only once the archive holds every row: a mover killed at any point leaves the
rows where they were, or already in the archive, never in neither. No room
row is locked: messages are taken by their own rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from storage.db import Queryable

__all__ = ["HOT_TABLES", "HotTier"]

# table -> (the MongoDB collection, the columns copied, what makes a row due)
HOT_TABLES: dict[str, tuple[str, str, str]] = {
    "messages": (
        "messages",
        """id::text AS _id, room_id::text AS room_id, seq, sender_id::text AS sender_id,
           client_msg_id, text, kind, target_id::text AS target_id, data::text AS data,
           created_at, edited_at, deleted""",
        "created_at < $1",
    ),
    "notifications": (
        "notifications",
        """id::text AS _id, user_id::text AS user_id, kind, title, body, data::text AS data,
           created_at, read_at""",
        "created_at < $1",
    ),
    "deliveries": (
        "deliveries",
        """id AS _id, source, source_id, channel, user_id::text AS user_id, address, kind,
           title, body, data::text AS data, status, attempts, result, created_at,
           finished_at, provider_ref""",
        "created_at < $1 AND status <> 'pending'",
    ),
}


class HotTier:
    @staticmethod
    async def take_due(
        conn: Queryable, table: str, *, before: float, limit: int
    ) -> list[dict[str, Any]]:
        _, columns, due = HOT_TABLES[table]
        rows = await conn.fetch(
            f"""SELECT {columns} FROM {table} WHERE {due}
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
            datetime.fromtimestamp(before, UTC),
            limit,
        )
        documents = []
        for row in rows:
            document = dict(row)
            document["data"] = orjson.loads(document["data"])
            documents.append(document)
        return documents

    @staticmethod
    async def delete(conn: Queryable, table: str, ids: list[Any]) -> None:
        kind = "bigint" if table == "deliveries" else "uuid"
        await conn.execute(f"DELETE FROM {table} WHERE id = ANY($1::{kind}[])", ids)

    @staticmethod
    async def lag_s(conn: Queryable, table: str, *, before: float) -> float:
        """How far past the hot window the oldest row still in PostgreSQL is."""
        oldest = await conn.fetchval(f"SELECT min(created_at) FROM {table}")
        if oldest is None:
            return 0.0
        return max(0.0, before - float(oldest.timestamp()))
