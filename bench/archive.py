"""The archive scenario: history pages from each tier, and PostgreSQL's size with the mover.

History is written straight into PostgreSQL (``rooms`` x ``per_room``), pages
of ``GET /rooms/{id}/messages?limit=50`` are timed while it is hot, then
``lifeline archive --now`` moves everything (``LIFELINE_HOT_DAYS=0``) to the
MongoDB-protocol server and the same pages are timed again, now read from
the archive. PostgreSQL's ``messages`` size is taken before and after (after
``VACUUM FULL``: the space a hot window of nothing occupies).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.search import seed

ROOT = Path(__file__).resolve().parent.parent


async def _pages(url: str, token: str, rooms: list[str], n: int) -> dict[str, float]:
    rng = random.Random(11)
    took: list[float] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(n):
            room = rng.choice(rooms)
            started = time.perf_counter()
            async with http.get(f"{url}/api/v1/rooms/{room}/messages?limit=50") as response:
                body = await response.json()
                assert response.status == 200 and len(body["messages"]) == 50, body
            took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 2),
        "p99_ms": round(took[max(0, int(len(took) * 0.99) - 1)], 2),
    }


async def _size(dsn: str, *, full: bool) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        if full:
            await conn.execute("VACUUM FULL messages")
        size = await conn.fetchval("SELECT pg_total_relation_size('messages')")
        rows = await conn.fetchval("SELECT count(*) FROM messages")
        return int(size), int(rows)
    finally:
        await conn.close()


def run(
    url: str, dsn: str, mongo_url: str, token: str, user_id: str, size: dict[str, Any]
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        await seed(
            dsn,
            rooms=size["archive_rooms"],
            per_room=size["archive_per_room"],
            searcher=user_id,
            member_rooms=size["archive_rooms"],
        )
        conn = await asyncpg.connect(dsn)
        try:
            rooms = [r["id"] for r in await conn.fetch("SELECT id::text AS id FROM rooms")]
        finally:
            await conn.close()
        before_bytes, before_rows = await _size(dsn, full=False)
        hot = await _pages(url, token, rooms, size["archive_pages"])
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")},
            "DATABASE_URL": dsn,
            "MONGODB_URL": mongo_url,
            "LIFELINE_HOT_DAYS": "0",
            "LIFELINE_JWT_SECRET": "bench-secret-" + "x" * 40,
            "LIFELINE_DATA_KEYS": "b1:YmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaGJlbmNoMTI=",
            "LIFELINE_LOG_LEVEL": "WARNING",
        }
        started = time.perf_counter()
        mover = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "archive",
            "--now",
            env=env,
            cwd=str(ROOT),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await mover.communicate()
        if mover.returncode != 0:
            raise SystemExit(f"lifeline archive --now failed:\n{err.decode()[-2000:]}")
        moved_s = time.perf_counter() - started
        after_bytes, after_rows = await _size(dsn, full=True)
        cold = await _pages(url, token, rooms, size["archive_pages"])
        return {
            "messages": before_rows,
            "hot p50_ms": hot["p50_ms"],
            "hot p99_ms": hot["p99_ms"],
            "archive p50_ms": cold["p50_ms"],
            "archive p99_ms": cold["p99_ms"],
            "move_rows_per_s": round(before_rows / moved_s, 1),
            "pg_messages_mb_before": round(before_bytes / 2**20, 1),
            "pg_messages_mb_after": round(after_bytes / 2**20, 1),
            "pg_rows_after": after_rows,
        }

    return asyncio.run(go())
