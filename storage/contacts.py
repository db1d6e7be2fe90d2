"""Emergency contacts of a user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["ContactRecord", "ContactRepository"]


@dataclass(frozen=True, slots=True)
class ContactRecord:
    id: str
    user_id: str | None
    name: str
    phone: str | None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "user_id": self.user_id, "name": self.name, "phone": self.phone}


_COLUMNS = "id::text AS id, contact_user_id::text AS user_id, name, phone"


class ContactRepository:
    def __init__(self, pool: asyncpg.Pool, *, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    def _contact(self, row: asyncpg.Record) -> ContactRecord:
        values = dict(row)
        values["phone"] = self._cipher.decrypt(values["phone"], "phone")
        return ContactRecord(**values)

    async def add(
        self,
        conn: Queryable,
        owner_id: str,
        *,
        user_id: str | None,
        name: str,
        phone: str | None,
        limit: int,
    ) -> ContactRecord | None:
        """None when the limit is reached or that user is already a contact (inside the
        caller's transaction, which this serialises per owner so the limit holds)."""
        await conn.execute("SELECT 1 FROM users WHERE id = $1::uuid FOR UPDATE", owner_id)
        count = await conn.fetchval(
            "SELECT count(*) FROM emergency_contacts WHERE owner_id = $1::uuid", owner_id
        )
        if count >= limit:
            return None
        row = await conn.fetchrow(
            f"""INSERT INTO emergency_contacts (owner_id, contact_user_id, name, phone)
                VALUES ($1::uuid, $2::uuid, $3, $4)
                ON CONFLICT (owner_id, contact_user_id) DO NOTHING
                RETURNING {_COLUMNS}""",
            owner_id,
            user_id,
            name,
            self._cipher.encrypt(phone, "phone"),
        )
        return None if row is None else self._contact(row)

    async def count(self, owner_id: str) -> int:
        return int(
            await self._pool.fetchval(
                "SELECT count(*) FROM emergency_contacts WHERE owner_id = $1::uuid", owner_id
            )
        )

    async def of(self, owner_id: str) -> list[ContactRecord]:
        rows = await self._pool.fetch(
            f"""SELECT {_COLUMNS} FROM emergency_contacts WHERE owner_id = $1::uuid
                 ORDER BY created_at, id""",
            owner_id,
        )
        return [self._contact(r) for r in rows]

    async def recipients_of(self, owner_id: str) -> list[tuple[str, str | None, str, str | None]]:
        """(contact id, user id, name, phone) of each contact; a user's own phone when
        none was given."""
        rows = await self._pool.fetch(
            """SELECT c.id::text AS id, c.contact_user_id::text AS user_id, c.name,
                      COALESCE(c.phone, u.phone) AS phone
                 FROM emergency_contacts c LEFT JOIN users u ON u.id = c.contact_user_id
                WHERE c.owner_id = $1::uuid ORDER BY c.created_at, c.id""",
            owner_id,
        )
        return [
            (r["id"], r["user_id"], r["name"], self._cipher.decrypt(r["phone"], "phone"))
            for r in rows
        ]

    @staticmethod
    async def delete(conn: Queryable, owner_id: str, contact_id: str) -> bool:
        done = await conn.execute(
            "DELETE FROM emergency_contacts WHERE owner_id = $1::uuid AND id = $2::uuid",
            owner_id,
            contact_id,
        )
        return done != "DELETE 0"
