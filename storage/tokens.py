"""Refresh-token families, rotation state and revoked access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storage.db import Queryable

__all__ = ["RefreshOutcome", "Session", "TokenRepository"]


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """What presenting a refresh token found."""

    status: str  # "rotated" | "reused" | "revoked" | "unknown"
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    """A login: its refresh family, when and from where it was used."""

    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None


class TokenRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    async def start_family(
        conn: Queryable,
        *,
        family_id: str,
        user_id: str,
        token_id: str,
        issued_at: datetime,
        expires_at: datetime,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        """A login: its family and first refresh token (inside the caller's transaction)."""
        await conn.execute(
            """INSERT INTO token_families
                      (id, user_id, created_at, last_used_at, user_agent, ip)
               VALUES ($1::uuid, $2::uuid, $3, $3, $4, $5)""",
            family_id,
            user_id,
            issued_at,
            user_agent,
            ip,
        )
        await conn.execute(
            """INSERT INTO refresh_tokens (id, family_id, user_id, issued_at, expires_at)
               VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5)""",
            token_id,
            family_id,
            user_id,
            issued_at,
            expires_at,
        )

    @staticmethod
    async def rotate(
        conn: Queryable,
        *,
        token_id: str,
        family_id: str,
        new_token_id: str,
        issued_at: datetime,
        expires_at: datetime,
    ) -> RefreshOutcome:
        """Mark the presented token used and record its successor, atomically.

        A token already used means it leaked: the whole family is revoked. Inside the
        caller's transaction (the row locks hold until it ends).
        """
        row = await conn.fetchrow(
            """SELECT t.user_id::text AS user_id, t.used_at, t.expires_at, f.revoked_at
                 FROM refresh_tokens t JOIN token_families f ON f.id = t.family_id
                WHERE t.id = $1::uuid AND t.family_id = $2::uuid
                  FOR UPDATE OF t, f""",
            token_id,
            family_id,
        )
        if row is None:
            return RefreshOutcome("unknown")
        if row["revoked_at"] is not None or row["expires_at"] <= issued_at:
            return RefreshOutcome("revoked", row["user_id"])
        if row["used_at"] is not None:
            await conn.execute(
                """UPDATE token_families SET revoked_at = now(), revoked_reason = 'reuse'
                    WHERE id = $1::uuid""",
                family_id,
            )
            return RefreshOutcome("reused", row["user_id"])
        await conn.execute(
            "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1::uuid", token_id, issued_at
        )
        await conn.execute(
            "UPDATE token_families SET last_used_at = $2 WHERE id = $1::uuid",
            family_id,
            issued_at,
        )
        await conn.execute(
            """INSERT INTO refresh_tokens (id, family_id, user_id, issued_at, expires_at)
               VALUES ($1::uuid, $2::uuid, $3::uuid, $4, $5)""",
            new_token_id,
            family_id,
            row["user_id"],
            issued_at,
            expires_at,
        )
        return RefreshOutcome("rotated", row["user_id"])

    async def sessions_of(self, user_id: str, *, now: datetime) -> list[Session]:
        """The user's logins still alive: not revoked, with a refresh token not expired."""
        rows = await self._pool.fetch(
            """SELECT f.id::text AS id, f.created_at, COALESCE(f.last_used_at, f.created_at)
                      AS last_used_at, f.user_agent, f.ip
                 FROM token_families f
                WHERE f.user_id = $1::uuid AND f.revoked_at IS NULL
                  AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = f.id
                                 AND t.used_at IS NULL AND t.expires_at > $2)
                ORDER BY f.created_at DESC""",
            user_id,
            now,
        )
        return [Session(**dict(r)) for r in rows]

    async def live_family_owner(self, family_id: str) -> str | None:
        """Whose login this is, while it is not revoked."""
        owner: str | None = await self._pool.fetchval(
            """SELECT user_id::text FROM token_families
                WHERE id = $1::uuid AND revoked_at IS NULL""",
            family_id,
        )
        return owner

    @staticmethod
    async def revoke_families_of(
        conn: Queryable, user_id: str, *, reason: str, keep: str | None = None
    ) -> list[str]:
        """Revoke every live login of the user but ``keep``; the family ids revoked."""
        rows = await conn.fetch(
            """UPDATE token_families SET revoked_at = now(), revoked_reason = $2
                WHERE user_id = $1::uuid AND revoked_at IS NULL
                  AND ($3::uuid IS NULL OR id <> $3::uuid)
                RETURNING id::text AS id""",
            user_id,
            reason,
            keep,
        )
        return [r["id"] for r in rows]

    @staticmethod
    async def revoke_family(conn: Queryable, family_id: str, *, reason: str) -> None:
        await conn.execute(
            """UPDATE token_families SET revoked_at = now(), revoked_reason = $2
                WHERE id = $1::uuid AND revoked_at IS NULL""",
            family_id,
            reason,
        )

    @staticmethod
    async def revoke_access(conn: Queryable, jti: str, expires_at: datetime) -> None:
        await conn.execute(
            """INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1::uuid, $2)
               ON CONFLICT DO NOTHING""",
            jti,
            expires_at,
        )

    async def live_revocations(
        self, now: datetime, family_since: datetime
    ) -> tuple[list[tuple[str, datetime]], list[str]]:
        """Revoked access tokens not yet expired, and families revoked recently enough
        that access tokens issued with them may still be alive."""
        tokens = await self._pool.fetch(
            "SELECT jti::text AS jti, expires_at FROM revoked_access_tokens WHERE expires_at > $1",
            now,
        )
        families = await self._pool.fetch(
            "SELECT id::text AS id FROM token_families WHERE revoked_at > $1", family_since
        )
        return [(r["jti"], r["expires_at"]) for r in tokens], [r["id"] for r in families]
