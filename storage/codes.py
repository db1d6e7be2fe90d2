"""One-time codes sent by email (password reset, email verification), kept hashed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from storage.db import Queryable

__all__ = ["CodeRepository", "StoredCode"]


@dataclass(frozen=True, slots=True)
class StoredCode:
    code_hash: str
    expires_at: float
    tries: int


class CodeRepository:
    @staticmethod
    async def put(
        conn: Queryable, user_id: str, purpose: str, *, code_hash: str, expires_at: float
    ) -> None:
        """A new code replaces the one before it (and its tries)."""
        await conn.execute(
            """INSERT INTO auth_codes (user_id, purpose, code_hash, expires_at)
               VALUES ($1::uuid, $2, $3, $4)
               ON CONFLICT (user_id, purpose) DO UPDATE
                  SET code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at,
                      tries = 0""",
            user_id,
            purpose,
            code_hash,
            datetime.fromtimestamp(expires_at, UTC),
        )

    @staticmethod
    async def take(conn: Queryable, user_id: str, purpose: str) -> StoredCode | None:
        """The code, locked for this transaction."""
        row = await conn.fetchrow(
            """SELECT code_hash, expires_at, tries FROM auth_codes
                WHERE user_id = $1::uuid AND purpose = $2 FOR UPDATE""",
            user_id,
            purpose,
        )
        if row is None:
            return None
        return StoredCode(row["code_hash"], row["expires_at"].timestamp(), row["tries"])

    @staticmethod
    async def tried(conn: Queryable, user_id: str, purpose: str) -> None:
        await conn.execute(
            "UPDATE auth_codes SET tries = tries + 1 WHERE user_id = $1::uuid AND purpose = $2",
            user_id,
            purpose,
        )

    @staticmethod
    async def spend(conn: Queryable, user_id: str, purpose: str) -> None:
        await conn.execute(
            "DELETE FROM auth_codes WHERE user_id = $1::uuid AND purpose = $2", user_id, purpose
        )
