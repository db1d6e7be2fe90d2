"""Migrations: applied once under concurrency; a failing one leaves the schema as it was."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from storage.db import Migration, apply_migrations, create_pool, load_migrations
from tests.services import Postgres, _create_database, _with_database


async def _fresh(postgres: Postgres) -> str:
    name = "lifeline_mig_" + uuid.uuid4().hex[:8]
    await _create_database(postgres.admin_dsn, name)
    return _with_database(postgres.admin_dsn, name)


async def test_concurrent_starts_migrate_once(postgres: Postgres) -> None:
    dsn = await _fresh(postgres)
    pools = [await create_pool(dsn, min_size=1, max_size=1) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(p) for p in pools))
        everything = [m.version for m in load_migrations()]
        assert sorted(v for r in results for v in r) == everything
        rows = await pools[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == everything
        assert await apply_migrations(pools[0]) == []
    finally:
        for pool in pools:
            await pool.close()


async def test_a_failing_migration_leaves_the_schema_unchanged(postgres: Postgres) -> None:
    dsn = await _fresh(postgres)
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        good = load_migrations()
        await apply_migrations(pool, good)
        broken = Migration(
            9999,
            "broken",
            "CREATE TABLE half_done (id int); ALTER TABLE users ADD COLUMN x int; SELECT 1/0;",
        )
        try:
            await apply_migrations(pool, [*good, broken])
        except asyncpg.DivisionByZeroError:
            pass
        else:
            raise AssertionError("the broken migration did not fail")
        assert await pool.fetchval("SELECT to_regclass('half_done')") is None
        columns = await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
        )
        assert "x" not in {c["column_name"] for c in columns}
        assert await pool.fetchval("SELECT max(version) FROM schema_migrations") == good[-1].version
    finally:
        await pool.close()
