"""Notifications, push devices and per-user notification preferences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import asyncpg
import orjson

from services.clock import iso
from storage.crypto import FieldCipher
from storage.db import Queryable

__all__ = ["NotificationRecord", "NotificationRepository", "Preferences", "Recipient"]


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: str
    user_id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "created_at": iso(self.created_at),
            "read": self.read_at is not None,
        }

    def event(self) -> dict[str, Any]:
        """The contract's ``notification`` event."""
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Preferences:
    channels: dict[str, dict[str, bool]]
    quiet_start: time | None
    quiet_end: time | None
    time_zone: str

    def public(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "quiet_hours": None
            if self.quiet_start is None or self.quiet_end is None
            else {
                "start": self.quiet_start.strftime("%H:%M"),
                "end": self.quiet_end.strftime("%H:%M"),
            },
            "time_zone": self.time_zone,
        }


DEFAULT_PREFERENCES = Preferences(channels={}, quiet_start=None, quiet_end=None, time_zone="UTC")


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: str
    email: str
    phone: str | None
    preferences: Preferences


def _prefs(row: asyncpg.Record | None) -> Preferences:
    if row is None or row["time_zone"] is None:
        return DEFAULT_PREFERENCES
    return Preferences(
        channels=orjson.loads(row["channels"]),
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
        time_zone=row["time_zone"],
    )


class NotificationRepository:
    def __init__(self, pool: asyncpg.Pool, *, cipher: FieldCipher) -> None:
        self._pool = pool
        self._cipher = cipher

    async def recipients(self, user_ids: list[str]) -> dict[str, Recipient]:
        rows = await self._pool.fetch(
            """SELECT u.id::text AS user_id, u.email, u.phone, p.channels::text AS channels,
                      p.quiet_start, p.quiet_end, p.time_zone
                 FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
                WHERE u.id = ANY($1::uuid[])""",
            user_ids,
        )
        return {
            r["user_id"]: Recipient(
                r["user_id"], r["email"], self._cipher.decrypt(r["phone"], "phone"), _prefs(r)
            )
            for r in rows
        }

    @staticmethod
    async def create(
        conn: Queryable,
        user_ids: list[str],
        *,
        kind: str,
        title: str,
        body: str,
        data: dict[str, Any],
        now: float,
    ) -> list[NotificationRecord]:
        rows = await conn.fetch(
            """INSERT INTO notifications (user_id, kind, title, body, data, created_at)
               SELECT u, $2, $3, $4, $5::jsonb, $6
                 FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n
               RETURNING id::text AS id, user_id::text AS user_id, created_at""",
            user_ids,
            kind,
            title,
            body,
            orjson.dumps(data).decode(),
            datetime.fromtimestamp(now, UTC),
        )
        by_user = {r["user_id"]: r for r in rows}
        return [
            NotificationRecord(
                id=by_user[u]["id"],
                user_id=u,
                kind=kind,
                title=title,
                body=body,
                data=data,
                created_at=by_user[u]["created_at"],
            )
            for u in user_ids
        ]

    async def of_user(
        self, user_id: str, *, unread_only: bool, limit: int
    ) -> list[NotificationRecord]:
        rows = await self._pool.fetch(
            """SELECT id::text AS id, user_id::text AS user_id, kind, title, body,
                      data::text AS data, created_at, read_at
                 FROM notifications
                WHERE user_id = $1::uuid AND (NOT $2 OR read_at IS NULL)
                ORDER BY created_at DESC, id LIMIT $3""",
            user_id,
            unread_only,
            limit,
        )
        return [NotificationRecord(**{**dict(r), "data": orjson.loads(r["data"])}) for r in rows]

    @staticmethod
    async def mark_read(conn: Queryable, user_id: str, ids: list[str], *, now: float) -> int:
        done = await conn.execute(
            """UPDATE notifications SET read_at = $3
                WHERE user_id = $1::uuid AND id = ANY($2::uuid[]) AND read_at IS NULL""",
            user_id,
            ids,
            datetime.fromtimestamp(now, UTC),
        )
        return int(done.split()[-1])

    # -- devices ------------------------------------------------------------------------------

    @staticmethod
    async def add_device(
        conn: Queryable, user_id: str, *, platform: str, push_token: str
    ) -> dict[str, Any]:
        """A token belongs to the last user who registered it (phones change hands)."""
        row = await conn.fetchrow(
            """INSERT INTO devices (user_id, platform, push_token) VALUES ($1::uuid, $2, $3)
               ON CONFLICT (push_token) DO UPDATE
                  SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform
               RETURNING id::text AS id, platform, push_token, created_at""",
            user_id,
            platform,
            push_token,
        )
        assert row is not None
        return {**dict(row), "created_at": iso(row["created_at"])}

    async def push_tokens(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self._pool.fetch(
            "SELECT push_token, platform FROM devices WHERE user_id = $1::uuid ORDER BY created_at",
            user_id,
        )
        return [(r["push_token"], r["platform"]) for r in rows]

    @staticmethod
    async def remove_tokens(conn: Queryable, tokens: list[str]) -> None:
        await conn.execute("DELETE FROM devices WHERE push_token = ANY($1::text[])", tokens)

    # -- preferences --------------------------------------------------------------------------

    async def preferences(self, user_id: str) -> Preferences:
        row = await self._pool.fetchrow(
            """SELECT channels::text AS channels, quiet_start, quiet_end, time_zone
                 FROM notification_preferences WHERE user_id = $1::uuid""",
            user_id,
        )
        return _prefs(row)

    @staticmethod
    async def set_preferences(conn: Queryable, user_id: str, prefs: Preferences) -> None:
        await conn.execute(
            """INSERT INTO notification_preferences
                      (user_id, channels, quiet_start, quiet_end, time_zone)
               VALUES ($1::uuid, $2::jsonb, $3, $4, $5)
               ON CONFLICT (user_id) DO UPDATE
                  SET channels = EXCLUDED.channels, quiet_start = EXCLUDED.quiet_start,
                      quiet_end = EXCLUDED.quiet_end, time_zone = EXCLUDED.time_zone""",
            user_id,
            orjson.dumps(prefs.channels).decode(),
            prefs.quiet_start,
            prefs.quiet_end,
            prefs.time_zone,
        )
