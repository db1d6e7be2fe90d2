"""Users: the one place with SQL about people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["TotpState", "UserRecord", "UserRepository"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    display_name: str
    role: str
    phone: str | None
    password_hash: str | None
    email_verified: bool = False
    blocked: bool = False
    totp_on: bool = False

    def public(self) -> dict[str, Any]:
        """The contract's user object: no phone, no hash."""
        return {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role,
            "blocked": self.blocked,
            "email_verified": self.email_verified,
        }


@dataclass(frozen=True, slots=True)
class TotpState:
    secret: str | None
    pending: str | None
    last_step: int | None


_COLUMNS = """id::text AS id, email, display_name, role, phone, password_hash, email_verified,
              blocked_at IS NOT NULL AS blocked, totp_secret IS NOT NULL AS totp_on"""


class UserRepository:
    def __init__(self, pool: asyncpg.Pool, *, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    def _user(self, row: asyncpg.Record | None) -> UserRecord | None:
        if row is None:
            return None
        values = dict(row)
        values["phone"] = self._cipher.decrypt(values["phone"], "phone")
        return UserRecord(**values)

    async def create(
        self,
        conn: Queryable,
        *,
        email: str,
        display_name: str,
        role: str,
        phone: str | None,
        password_hash: str | None,
        user_id: str | None = None,
        external_sub: str | None = None,
    ) -> UserRecord | None:
        """None when the email is taken."""
        row = await conn.fetchrow(
            f"""INSERT INTO users
                       (id, email, display_name, role, phone, password_hash, external_sub)
                VALUES (COALESCE($1::uuid, gen_random_uuid()), $2, $3, $4, $5, $6, $7)
                ON CONFLICT DO NOTHING
                RETURNING {_COLUMNS}""",
            user_id,
            email,
            display_name,
            role,
            self._cipher.encrypt(phone, "phone"),
            password_hash,
            external_sub,
        )
        return self._user(row)

    @staticmethod
    async def create_known(
        conn: Queryable, *, user_id: str, email: str, display_name: str, role: str
    ) -> None:
        """A user another service created: known here, with no password (signs in elsewhere).
        Completes the placeholder an earlier event of theirs left."""
        completed = await conn.fetchval(
            """UPDATE users SET email = $2, display_name = $3, role = $4, placeholder = false
                WHERE id = $1::uuid AND placeholder
                  AND NOT EXISTS (SELECT 1 FROM users o
                                   WHERE lower(o.email) = lower($2) AND o.id <> $1::uuid)
                RETURNING true""",
            user_id,
            email,
            display_name,
            role,
        )
        if completed:
            return
        await conn.execute(
            """INSERT INTO users (id, email, display_name, role)
               VALUES ($1::uuid, $2, $3, $4) ON CONFLICT DO NOTHING""",
            user_id,
            email,
            display_name,
            role,
        )

    @staticmethod
    async def ensure_placeholder(conn: Queryable, user_id: str) -> None:
        """A row for a user only another service knows yet; user.created completes it."""
        await conn.execute(
            """INSERT INTO users (id, email, display_name, role, placeholder)
               VALUES ($1::uuid, $1 || '@pending.invalid', '', 'donor', true)
               ON CONFLICT DO NOTHING""",
            user_id,
        )

    async def by_email(self, email: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
        )
        return self._user(row)

    async def by_id(self, user_id: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE id = $1::uuid", user_id
        )
        return self._user(row)

    async def by_external_sub(self, sub: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM users WHERE external_sub = $1", sub
        )
        return self._user(row)

    # -- account changes, inside the caller's transaction -----------------------------------

    @staticmethod
    async def set_password(conn: Queryable, user_id: str, password_hash: str) -> None:
        await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1::uuid", user_id, password_hash
        )

    @staticmethod
    async def set_email_verified(conn: Queryable, user_id: str) -> None:
        await conn.execute("UPDATE users SET email_verified = true WHERE id = $1::uuid", user_id)

    @staticmethod
    async def set_blocked(conn: Queryable, user_id: str, *, blocked: bool) -> bool:
        """Block or unblock; False if the user is unknown."""
        done = await conn.fetchval(
            """UPDATE users SET blocked_at = CASE WHEN $2 THEN COALESCE(blocked_at, now()) END
                WHERE id = $1::uuid RETURNING true""",
            user_id,
            blocked,
        )
        return bool(done)

    @staticmethod
    async def set_role(conn: Queryable, user_id: str, role: str) -> None:
        await conn.execute("UPDATE users SET role = $2 WHERE id = $1::uuid", user_id, role)

    async def totp(self, conn: Queryable, user_id: str, *, lock: bool = False) -> TotpState:
        row = await conn.fetchrow(
            "SELECT totp_secret, totp_pending, totp_last_step FROM users WHERE id = $1::uuid"
            + (" FOR UPDATE" if lock else ""),
            user_id,
        )
        if row is None:
            return TotpState(None, None, None)
        return TotpState(
            self._cipher.decrypt(row["totp_secret"], "totp"),
            self._cipher.decrypt(row["totp_pending"], "totp"),
            row["totp_last_step"],
        )

    async def set_totp(
        self,
        conn: Queryable,
        user_id: str,
        *,
        secret: str | None,
        pending: str | None,
        last_step: int | None,
    ) -> None:
        await conn.execute(
            """UPDATE users SET totp_secret = $2, totp_pending = $3, totp_last_step = $4
                WHERE id = $1::uuid""",
            user_id,
            self._cipher.encrypt(secret, "totp"),
            self._cipher.encrypt(pending, "totp"),
            last_step,
        )

    @staticmethod
    async def set_totp_step(conn: Queryable, user_id: str, step: int) -> None:
        await conn.execute(
            "UPDATE users SET totp_last_step = $2 WHERE id = $1::uuid", user_id, step
        )

    async def search(self, query: str | None, *, limit: int) -> list[UserRecord]:
        """Operators' list: email or name containing ``query``, newest first."""
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM users
                 WHERE $1::text IS NULL OR email ILIKE '%' || $1 || '%'
                    OR display_name ILIKE '%' || $1 || '%'
                 ORDER BY created_at DESC, id LIMIT $2""",
            query,
            limit,
        )
        return [u for u in (self._user(r) for r in rows) if u is not None]

    @staticmethod
    async def audit(
        conn: Queryable,
        *,
        actor_id: str | None,
        action: str,
        target_id: str,
        detail: dict[str, Any],
        now: float,
    ) -> None:
        """What an operator (or another service's event) did to an account."""
        await conn.execute(
            """INSERT INTO admin_audit (at, actor_id, action, target_id, detail)
               VALUES (to_timestamp($1), $2::uuid, $3, $4::uuid, $5::jsonb)""",
            now,
            actor_id,
            action,
            target_id,
            orjson.dumps(detail).decode(),
        )
