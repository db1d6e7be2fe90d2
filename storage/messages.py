"""Chat messages: the gapless send, history pages and resync reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.clock import iso
from storage.db import Queryable

__all__ = ["MessageRecord", "MessageRepository", "archived_message"]


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    room_id: str
    seq: int
    sender_id: str
    text: str
    created_at: datetime
    kind: str = "text"
    target_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    edited_at: datetime | None = None
    deleted: bool = False
    # {id, name, mime, size, url} with short-lived links, filled in for readers.
    attachments: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "room_id": self.room_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "kind": self.kind,
            "text": self.text,
            "target_id": self.target_id,
            "data": self.data,
            "created_at": iso(self.created_at),
            "edited_at": None if self.edited_at is None else iso(self.edited_at),
            "deleted": self.deleted,
            "attachments": self.attachments,
        }


_COLUMNS = """id::text AS id, room_id::text AS room_id, seq, sender_id::text AS sender_id, text,
              created_at, kind, target_id::text AS target_id, data::text AS data, edited_at,
              deleted"""
# What a room's history shows: messages as they now read, not the edits and deletes.
_READABLE = "kind NOT IN ('edit', 'delete')"


def _message(row: asyncpg.Record) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        text=row["text"],
        created_at=row["created_at"],
        kind=row["kind"],
        target_id=row["target_id"],
        data=orjson.loads(row["data"]),
        edited_at=row["edited_at"],
        deleted=row["deleted"],
    )


def archived_message(doc: dict[str, Any]) -> MessageRecord:
    """A message as the archive tier keeps it (storage/hot_tier.py copies these columns)."""
    return MessageRecord(
        id=doc["_id"],
        room_id=doc["room_id"],
        seq=doc["seq"],
        sender_id=doc["sender_id"],
        text=doc["text"],
        created_at=doc["created_at"],
        kind=doc["kind"],
        target_id=doc.get("target_id"),
        data=doc.get("data") or {},
        edited_at=doc.get("edited_at"),
        deleted=bool(doc.get("deleted")),
    )


class MessageRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    async def send(
        conn: Queryable, *, room_id: str, sender_id: str, client_msg_id: str, text: str
    ) -> tuple[MessageRecord, bool, int] | None:
        """Store a message with the room's next seq, inside the caller's transaction.

        Returns the message, whether it is new (False: a retry, answered with
        the first message of that ``client_msg_id``) and the room's
        members_version it was written under; None for a non-member.
        """
        row = await conn.fetchrow(
            """SELECT id::text AS id, seq, text, created_at, created, members_version
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
        return message, bool(row["created"]), int(row["members_version"])

    @staticmethod
    async def by_client_id(
        conn: Queryable, room_id: str, sender_id: str, client_msg_id: str
    ) -> MessageRecord | None:
        row = await conn.fetchrow(
            f"""SELECT {_COLUMNS} FROM messages
                 WHERE room_id = $1::uuid AND sender_id = $2::uuid AND client_msg_id = $3""",
            room_id,
            sender_id,
            client_msg_id,
        )
        return None if row is None else _message(row)

    @staticmethod
    async def get(conn: Queryable, room_id: str, message_id: str) -> MessageRecord | None:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM messages WHERE room_id = $1::uuid AND id = $2::uuid",
            room_id,
            message_id,
        )
        return None if row is None else _message(row)

    @staticmethod
    async def insert_event(
        conn: Queryable,
        *,
        room_id: str,
        seq: int,
        sender_id: str,
        client_msg_id: str,
        kind: str,
        text: str = "",
        target_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> MessageRecord:
        """A room event (a membership change, an edit, a delete) at the seq taken for it."""
        row = await conn.fetchrow(
            f"""INSERT INTO messages (room_id, seq, sender_id, client_msg_id, text, kind,
                                      target_id, data)
                VALUES ($1::uuid, $2, $3::uuid, $4, $5, $6, $7::uuid, $8::jsonb)
                RETURNING {_COLUMNS}""",
            room_id,
            seq,
            sender_id,
            client_msg_id,
            text,
            kind,
            target_id,
            orjson.dumps(data or {}).decode(),
        )
        assert row is not None
        return _message(row)

    @staticmethod
    async def edit(conn: Queryable, message_id: str, text: str, *, at: datetime) -> None:
        await conn.execute(
            "UPDATE messages SET text = $2, edited_at = $3 WHERE id = $1::uuid",
            message_id,
            text,
            at,
        )

    @staticmethod
    async def delete(conn: Queryable, message_id: str) -> None:
        """The message reads as deleted, its text gone."""
        await conn.execute(
            "UPDATE messages SET text = '', deleted = true WHERE id = $1::uuid", message_id
        )

    async def before(
        self, room_id: str, *, before_seq: int | None, limit: int, from_seq: int = 1
    ) -> list[MessageRecord]:
        """Newest first, from_seq <= seq < before_seq, as they now read."""
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM messages
                 WHERE room_id = $1::uuid AND ($2::bigint IS NULL OR seq < $2) AND seq >= $4
                   AND {_READABLE}
                 ORDER BY seq DESC LIMIT $3""",
            room_id,
            before_seq,
            limit,
            from_seq,
        )
        return [_message(r) for r in rows]

    async def search(
        self, user_id: str, query: str, *, room_id: str | None, limit: int
    ) -> list[tuple[MessageRecord, str]]:
        """Best match first, only from rooms (and seqs) the user may read, never a deleted
        message; each with a highlight (matches in <mark>...</mark>). Full-text matches
        come first; only when they do not fill the page are near misses (trigram word
        similarity, for typos) looked for, which costs more per row."""
        found = await self._search(user_id, query, room_id, limit, near=False)
        if len(found) < limit:
            found += await self._search(user_id, query, room_id, limit - len(found), near=True)
        return found

    async def _search(
        self, user_id: str, query: str, room_id: str | None, limit: int, *, near: bool
    ) -> list[tuple[MessageRecord, str]]:
        match = (
            "NOT coalesce(m.search @@ q.query, false) AND $3 <% m.text"
            if near
            else "m.search @@ q.query"
        )
        rank = "word_similarity($3, m.text)" if near else "ts_rank(m.search, q.query)"
        rows = await self._pool.fetch(
            f"""WITH readable AS (
                    SELECT room_id, from_seq FROM room_members
                     WHERE user_id = $1::uuid AND ($2::uuid IS NULL OR room_id = $2::uuid)
                ), q AS (
                    SELECT websearch_to_tsquery('english', $3)
                           || websearch_to_tsquery('russian', $3) AS query,
                           $5::regconfig AS config
                ), hits AS (
                    SELECT {", ".join("m." + c.strip() for c in _COLUMNS.split(","))},
                           {rank} AS rank
                      FROM messages m JOIN readable r ON r.room_id = m.room_id
                           AND m.seq >= r.from_seq, q
                     WHERE m.kind = 'text' AND NOT m.deleted AND {match}
                     ORDER BY rank DESC, m.created_at DESC, m.id LIMIT $4
                )
                -- Highlights only for the page answered: ts_headline is the costly part.
                SELECT hits.*, ts_headline(q.config, hits.text, q.query,
                                           'StartSel=<mark>, StopSel=</mark>, MaxFragments=2,
                                            MaxWords=20, MinWords=5') AS highlight
                  FROM hits, q ORDER BY hits.rank DESC, hits.created_at DESC, hits.id""",
            user_id,
            room_id,
            query,
            limit,
            # Highlights are parsed as the query's language: Cyrillic means Russian.
            "russian" if any("\u0400" <= c <= "\u04ff" for c in query) else "english",
        )
        return [(_message(r), r["highlight"]) for r in rows]

    async def after(self, wanted: dict[str, int], *, limit: int) -> dict[str, list[MessageRecord]]:
        """For each room, up to ``limit`` events with seq above its given one, oldest first
        (the caller raises the given seq to what the member may read)."""
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
