"""Pushes owed to people with no socket anywhere, kept until the notification work sends them."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

__all__ = ["DuePushRepository"]


class DuePushRepository:
    """The ``Push`` port until a push provider exists: nothing owed is dropped."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def push(
        self, user_ids: list[str], *, kind: str, title: str, body: str, data: dict[str, Any]
    ) -> None:
        if not user_ids:
            return
        await self._pool.execute(
            """INSERT INTO push_due (user_id, kind, title, body, data)
               SELECT u, $2, $3, $4, $5::jsonb FROM unnest($1::uuid[]) AS u""",
            user_ids,
            kind,
            title,
            body,
            orjson.dumps(data).decode(),
        )
