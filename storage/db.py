"""asyncpg pool and versioned SQL migrations.

Migrations are ``storage/migrations/NNNN_name.sql``, applied in order at
startup under a PostgreSQL advisory lock, so several nodes starting at once
migrate once. Each file runs in its own transaction with its version row, so
a failing migration leaves the schema as it was.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import asyncpg
import asyncpg.pool

__all__ = [
    "Database",
    "Migration",
    "Queryable",
    "apply_migrations",
    "create_pool",
    "load_migrations",
    "new_pool",
]


class Queryable(Protocol):
    """Whatever runs a statement: a connection inside a service's transaction, or the
    ``Database`` itself for a statement that is a unit of work on its own."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any: ...


log = logging.getLogger(__name__)

# Any constant works; it only has to be the same on every node.
_MIGRATION_LOCK_ID = 0x11FE11E
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Database:
    """The unit of work, which services open: ``async with db.transaction() as conn``
    groups several repositories' writes; a lone statement runs on the database itself
    (one pooled connection, committed by itself, no BEGIN/COMMIT round trips)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        return await self._pool.execute(query, *args)

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None:
        await self._pool.executemany(command, args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        return await self._pool.fetchval(query, *args, column=column)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("storage.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a version number")
    return found


async def apply_migrations(
    pool: asyncpg.Pool, migrations: list[Migration] | None = None
) -> list[int]:
    """Apply what is missing; returns the versions applied by this call."""
    migrations = load_migrations() if migrations is None else migrations
    async with pool.acquire() as conn:
        return await _apply(conn, migrations)


async def _apply(conn: asyncpg.pool.PoolConnectionProxy, migrations: list[Migration]) -> list[int]:
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("migration applied", extra={"version": migration.version})
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


def new_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """A pool built whole but not yet connected: ``await pool`` opens it (at startup)."""
    return asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=30,
        max_inactive_connection_lifetime=300,
        server_settings={"application_name": "lifeline", "timezone": "UTC"},
        reset=_light_reset,
    )


async def create_pool(dsn: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    pool = await new_pool(dsn, min_size=min_size, max_size=max_size)
    assert pool is not None
    return pool


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool without asyncpg's default reset round trip.

    The default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release, one more round trip per query. Lifeline keeps no session
    state on pooled connections (the migration lock is released where it is
    taken; no LISTEN, no SET), so only an unfinished transaction needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
