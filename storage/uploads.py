"""Uploads: what was announced, whose it is, and which message carries it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage.db import Queryable

__all__ = ["UploadRecord", "UploadRepository"]


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    owner_id: str
    name: str
    mime: str
    size: int
    object_key: str
    message_id: str | None

    def public(self, url: str) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mime": self.mime, "size": self.size, "url": url}


_COLUMNS = """id::text AS id, owner_id::text AS owner_id, name, mime, size, object_key,
              message_id::text AS message_id"""


class UploadRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    async def create(
        conn: Queryable,
        *,
        upload_id: str,
        owner_id: str,
        name: str,
        mime: str,
        size: int,
        object_key: str,
        now: float,
    ) -> None:
        await conn.execute(
            """INSERT INTO uploads (id, owner_id, name, mime, size, object_key, created_at)
               VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7)""",
            upload_id,
            owner_id,
            name,
            mime,
            size,
            object_key,
            datetime.fromtimestamp(now, UTC),
        )

    async def get(self, upload_id: str) -> UploadRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM uploads WHERE id = $1::uuid", upload_id
        )
        return None if row is None else UploadRecord(**dict(row))

    async def of_owner(self, owner_id: str, upload_ids: list[str]) -> list[UploadRecord]:
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM uploads
                 WHERE owner_id = $1::uuid AND id = ANY($2::uuid[])""",
            owner_id,
            upload_ids,
        )
        return [UploadRecord(**dict(r)) for r in rows]

    @staticmethod
    async def attach(conn: Queryable, message_id: str, upload_ids: list[str]) -> int:
        """Let a message carry these uploads (in order); how many were still free."""
        rows = await conn.fetch(
            """UPDATE uploads u SET message_id = $1::uuid, n = t.n
                 FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, n)
                WHERE u.id = t.id AND u.message_id IS NULL RETURNING u.id""",
            message_id,
            upload_ids,
        )
        return len(rows)

    async def of_messages(self, message_ids: list[str]) -> dict[str, list[UploadRecord]]:
        if not message_ids:
            return {}
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM uploads WHERE message_id = ANY($1::uuid[])
                 ORDER BY message_id, n""",
            message_ids,
        )
        found: dict[str, list[UploadRecord]] = {}
        for r in rows:
            found.setdefault(r["message_id"], []).append(UploadRecord(**dict(r)))
        return found

    @staticmethod
    async def take_stale(conn: Queryable, *, before: float, limit: int) -> list[UploadRecord]:
        """Uploads never carried by a message, announced before ``before``: removed."""
        rows = await conn.fetch(
            f"""DELETE FROM uploads WHERE id IN (
                    SELECT id FROM uploads WHERE message_id IS NULL AND created_at < $1
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                RETURNING {_COLUMNS}""",
            datetime.fromtimestamp(before, UTC),
            limit,
        )
        return [UploadRecord(**dict(r)) for r in rows]
