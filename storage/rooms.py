"""Chat rooms, their members and read markers: the one place with SQL about rooms."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from storage.db import Queryable

__all__ = ["RoomRecord", "RoomRepository", "as_uuid"]


def as_uuid(value: str) -> str | None:
    """The canonical form of an id that could be a row's, or None.

    Ids come from clients; one that is not a UUID names nothing we store, so
    callers treat it as an unknown room or user instead of asking PostgreSQL.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: str
    kind: str
    title: str | None
    member_ids: list[str]
    last_seq: int
    unread: int | None = None
    roles: list[str] | None = None

    def role_of(self, user_id: str) -> str | None:
        for member, role in zip(self.member_ids, self.roles or [], strict=False):
            if member == user_id:
                return role
        return None

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "member_ids": self.member_ids,
            "members": [
                {"user_id": u, "role": r}
                for u, r in zip(self.member_ids, self.roles or [], strict=False)
            ],
            "last_seq": self.last_seq,
        }
        if self.unread is not None:
            body["unread"] = self.unread
        return body


_MEMBERS = """ARRAY(SELECT m.user_id::text FROM room_members m
                     WHERE m.room_id = r.id ORDER BY m.joined_at, m.user_id) AS member_ids,
              ARRAY(SELECT m.role FROM room_members m
                     WHERE m.room_id = r.id ORDER BY m.joined_at, m.user_id) AS roles"""
_ROOM = f"""SELECT r.id::text AS id, r.kind, r.title, r.last_seq, {_MEMBERS} FROM rooms r"""


def _room(row: asyncpg.Record) -> RoomRecord:
    return RoomRecord(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        member_ids=list(row["member_ids"]),
        last_seq=row["last_seq"],
        unread=row.get("unread"),
        roles=list(row["roles"]),
    )


class RoomRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def existing_users(self, user_ids: list[str]) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT id::text FROM users WHERE id = ANY($1::uuid[])", user_ids
        )
        return {r["id"] for r in rows}

    @staticmethod
    async def create(
        conn: Queryable,
        *,
        kind: str,
        title: str | None,
        creator_id: str,
        member_ids: list[str],
        direct_key: str | None,
    ) -> tuple[RoomRecord, bool]:
        """The room, and whether it is new (a direct room may already exist)."""
        room_id = await conn.fetchval(
            """INSERT INTO rooms (kind, title, direct_key, created_by)
               VALUES ($1, $2, $3, $4::uuid)
               ON CONFLICT (direct_key) DO NOTHING
               RETURNING id::text""",
            kind,
            title,
            direct_key,
            creator_id,
        )
        created = room_id is not None
        if created:
            await conn.execute(
                """INSERT INTO room_members (room_id, user_id, joined_at)
                   SELECT $1::uuid, u, clock_timestamp()
                     FROM unnest($2::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n""",
                room_id,
                [creator_id, *member_ids],
            )
            if kind == "group":  # the creator of a group is its owner
                await conn.execute(
                    """UPDATE room_members SET role = 'owner'
                        WHERE room_id = $1::uuid AND user_id = $2::uuid""",
                    room_id,
                    creator_id,
                )
        else:
            room_id = await conn.fetchval(
                "SELECT id::text FROM rooms WHERE direct_key = $1", direct_key
            )
        row = await conn.fetchrow(_ROOM + " WHERE r.id = $1::uuid", room_id)
        assert row is not None
        return _room(row), created

    async def get(self, room_id: str) -> RoomRecord | None:
        row = await self._pool.fetchrow(_ROOM + " WHERE r.id = $1::uuid", room_id)
        return None if row is None else _room(row)

    async def for_member(self, user_id: str) -> list[RoomRecord]:
        rows = await self._pool.fetch(
            f"""SELECT q.*, (SELECT count(*) FROM messages x
                             WHERE x.room_id = q.id::uuid AND x.seq > q.read_seq
                               AND x.sender_id <> $1::uuid) AS unread
                 FROM (SELECT r.id::text AS id, r.kind, r.title, r.last_seq, me.read_seq,
                              {_MEMBERS}, r.created_at
                         FROM room_members me JOIN rooms r ON r.id = me.room_id
                        WHERE me.user_id = $1::uuid) q
                ORDER BY q.created_at, q.id""",
            user_id,
        )
        return [_room(r) for r in rows]

    async def member_ids(self, room_id: str) -> tuple[int, list[str]]:
        """The room's members_version and its members (as of one snapshot)."""
        row = await self._pool.fetchrow(
            """SELECT r.members_version,
                      ARRAY(SELECT m.user_id::text FROM room_members m
                             WHERE m.room_id = r.id) AS members
                 FROM rooms r WHERE r.id = $1::uuid""",
            room_id,
        )
        if row is None:
            return 0, []
        return int(row["members_version"]), list(row["members"])

    async def is_member(self, room_id: str, user_id: str) -> bool:
        found = await self._pool.fetchval(
            "SELECT 1 FROM room_members WHERE room_id = $1::uuid AND user_id = $2::uuid",
            room_id,
            user_id,
        )
        return found is not None

    async def member_rooms(self, user_id: str, room_ids: list[str]) -> dict[str, int]:
        """Which of these rooms the user is a member of, with the first seq they may read."""
        rows = await self._pool.fetch(
            """SELECT room_id::text AS room_id, from_seq FROM room_members
                WHERE user_id = $1::uuid AND room_id = ANY($2::uuid[])""",
            user_id,
            room_ids,
        )
        return {r["room_id"]: int(r["from_seq"]) for r in rows}

    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT id::text AS id, last_seq FROM rooms WHERE id = ANY($1::uuid[])", room_ids
        )
        return {r["id"]: int(r["last_seq"]) for r in rows}

    async def membership(self, room_id: str, user_id: str) -> tuple[str, int] | None:
        """(role, first readable seq) of a member, or None."""
        row = await self._pool.fetchrow(
            """SELECT role, from_seq FROM room_members
                WHERE room_id = $1::uuid AND user_id = $2::uuid""",
            room_id,
            user_id,
        )
        return None if row is None else (row["role"], int(row["from_seq"]))

    # -- changes, under the room's row lock inside the caller's transaction -----------------

    @staticmethod
    async def lock(conn: Queryable, room_id: str) -> tuple[str, str | None] | None:
        """Lock the room (sends and changes to it wait); its kind and title."""
        row = await conn.fetchrow(
            "SELECT kind, title FROM rooms WHERE id = $1::uuid FOR UPDATE", room_id
        )
        return None if row is None else (row["kind"], row["title"])

    @staticmethod
    async def role(conn: Queryable, room_id: str, user_id: str) -> str | None:
        role: str | None = await conn.fetchval(
            "SELECT role FROM room_members WHERE room_id = $1::uuid AND user_id = $2::uuid",
            room_id,
            user_id,
        )
        return role

    @staticmethod
    async def next_seq(conn: Queryable, room_id: str, *, members_changed: bool) -> tuple[int, int]:
        """Take the room's next seq (and a new members_version if members change)."""
        row = await conn.fetchrow(
            """UPDATE rooms SET last_seq = last_seq + 1,
                      members_version = members_version + CASE WHEN $2 THEN 1 ELSE 0 END
                WHERE id = $1::uuid RETURNING last_seq, members_version""",
            room_id,
            members_changed,
        )
        assert row is not None
        return int(row["last_seq"]), int(row["members_version"])

    @staticmethod
    async def add_members(
        conn: Queryable, room_id: str, user_ids: list[str], *, from_seq: int
    ) -> None:
        await conn.execute(
            """INSERT INTO room_members (room_id, user_id, joined_at, from_seq)
               SELECT $1::uuid, u, clock_timestamp(), $3
                 FROM unnest($2::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n
               ON CONFLICT DO NOTHING""",
            room_id,
            user_ids,
            from_seq,
        )

    @staticmethod
    async def members_among(conn: Queryable, room_id: str, user_ids: list[str]) -> set[str]:
        rows = await conn.fetch(
            """SELECT user_id::text AS user_id FROM room_members
                WHERE room_id = $1::uuid AND user_id = ANY($2::uuid[])""",
            room_id,
            user_ids,
        )
        return {r["user_id"] for r in rows}

    @staticmethod
    async def remove_member(conn: Queryable, room_id: str, user_id: str) -> None:
        await conn.execute(
            "DELETE FROM room_members WHERE room_id = $1::uuid AND user_id = $2::uuid",
            room_id,
            user_id,
        )

    @staticmethod
    async def set_role(conn: Queryable, room_id: str, user_id: str, role: str) -> None:
        await conn.execute(
            """UPDATE room_members SET role = $3
                WHERE room_id = $1::uuid AND user_id = $2::uuid""",
            room_id,
            user_id,
            role,
        )

    @staticmethod
    async def successor(conn: Queryable, room_id: str) -> str | None:
        """Who becomes owner when the owner leaves: the longest-standing admin, else member."""
        found: str | None = await conn.fetchval(
            """SELECT user_id::text FROM room_members WHERE room_id = $1::uuid
                ORDER BY role <> 'admin', joined_at, user_id LIMIT 1""",
            room_id,
        )
        return found

    @staticmethod
    async def set_title(conn: Queryable, room_id: str, title: str) -> None:
        await conn.execute("UPDATE rooms SET title = $2 WHERE id = $1::uuid", room_id, title)

    @staticmethod
    async def mark_read(
        conn: Queryable, room_id: str, user_id: str, seq: int
    ) -> tuple[bool, int] | None:
        """Move a member's read marker forward to ``seq``.

        None when the user is not a member; otherwise whether the marker moved
        and the room's last seq (a marker never passes it).
        """
        row = await conn.fetchrow(
            """WITH target AS (
                   SELECT m.read_seq, r.last_seq FROM room_members m
                     JOIN rooms r ON r.id = m.room_id
                    WHERE m.room_id = $1::uuid AND m.user_id = $2::uuid
               ), moved AS (
                   UPDATE room_members m SET read_seq = $3
                     FROM target t
                    WHERE m.room_id = $1::uuid AND m.user_id = $2::uuid
                      AND m.read_seq < $3 AND $3 <= t.last_seq
                   RETURNING m.read_seq
               )
               SELECT t.last_seq, EXISTS (SELECT 1 FROM moved) AS moved FROM target t""",
            room_id,
            user_id,
            seq,
        )
        if row is None:
            return None
        return bool(row["moved"]), int(row["last_seq"])
