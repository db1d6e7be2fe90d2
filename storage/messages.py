"""Chat messages: the gapless send, history pages and resync reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.clock import iso
from storage.db import Queryable

__all__ = ["MessageRecord", "MessageRepository"]


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    room_id: str
    seq: int
    sender_id: str
    text: str
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "text": self.text,
            "created_at": iso(self.created_at),
        }


_COLUMNS = (
    "id::text AS id, room_id::text AS room_id, seq, sender_id::text AS sender_id, text, created_at"
)


def _message(row: asyncpg.Record) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        text=row["text"],
        created_at=row["created_at"],
    )


class MessageRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    async def send(
        conn: Queryable, *, room_id: str, sender_id: str, client_msg_id: str, text: str
    ) -> tuple[MessageRecord, bool] | None:
        """Store a message with the room's next seq, inside the caller's transaction.

        Returns the message and whether it is new (False: a retry, answered with
        the first message of that ``client_msg_id``), or None for a non-member.
        """
        row = await conn.fetchrow(
            """SELECT id::text AS id, seq, text, created_at, created
                 FROM chat_send($1::uuid, $2::uuid, $3, $4)""",
            room_id,
            sender_id,
            client_msg_id,
            text,
        )
        if row is None:
            return None
        # On a retry the first text wins, whatever this one says.
        message = MessageRecord(
            id=row["id"],
            room_id=room_id,
            seq=row["seq"],
            sender_id=sender_id,
            text=row["text"],
            created_at=row["created_at"],
        )
        return message, bool(row["created"])

    async def before(
        self, room_id: str, *, before_seq: int | None, limit: int
    ) -> list[MessageRecord]:
        """Newest first, seq < before_seq."""
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM messages
                 WHERE room_id = $1::uuid AND ($2::bigint IS NULL OR seq < $2)
                 ORDER BY seq DESC LIMIT $3""",
            room_id,
            before_seq,
            limit,
        )
        return [_message(r) for r in rows]

    async def after(self, wanted: dict[str, int], *, limit: int) -> dict[str, list[MessageRecord]]:
        """For each room, up to ``limit`` messages with seq above its given one, oldest first."""
        if not wanted:
            return {}
        room_ids = list(wanted)
        rows = await self._pool.fetch(
            f"""SELECT x.* FROM unnest($1::uuid[], $2::bigint[]) AS w(room_id, last_seq)
                  CROSS JOIN LATERAL (
                      SELECT {_COLUMNS} FROM messages m
                       WHERE m.room_id = w.room_id AND m.seq > w.last_seq
                       ORDER BY m.seq LIMIT $3) x""",
            room_ids,
            [wanted[r] for r in room_ids],
            limit,
        )
        found: dict[str, list[MessageRecord]] = {r: [] for r in room_ids}
        for row in rows:
            found[row["room_id"]].append(_message(row))
        return found
