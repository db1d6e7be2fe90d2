"""Users: the one place with SQL about people."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["UserRecord", "UserRepository"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    email: str
    display_name: str
    role: str
    phone: str | None
    password_hash: str | None

    def public(self) -> dict[str, Any]:
        """The contract's user object: no phone, no hash."""
        return {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "role": self.role,
        }


_COLUMNS = "id::text AS id, email, display_name, role, phone, password_hash"


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
        row = await self._pool.fetchrow(
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
        """A user another service created: known here, with no password (signs in elsewhere)."""
        await conn.execute(
            """INSERT INTO users (id, email, display_name, role)
               VALUES ($1::uuid, $2, $3, $4) ON CONFLICT DO NOTHING""",
            user_id,
            email,
            display_name,
            role,
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
