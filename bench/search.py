"""The search scenario: GET /api/v1/search/messages over a large chat history.

The history is written straight into PostgreSQL (a node would take hours to
send it): ``rooms`` rooms of ``per_room`` messages each, words drawn from an
English and Russian vocabulary, the searcher a member of ``member_rooms`` of
them. Then the searcher asks ``queries`` searches one after another over REST
(common words, rare words, a typo, one room) and the latencies are reported.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

import aiohttp
import asyncpg

COMMON = ["help", "doctor", "insulin", "today", "tomorrow", "помощь", "врач", "завтра"]
RARE = ["prescription", "ambulance", "pharmacy", "рецепт", "аптека", "инсулин"]
FILLER = ["the", "at", "and", "we", "will", "call", "meet", "home", "дома", "сегодня", "и"]


async def seed(dsn: str, *, rooms: int, per_room: int, searcher: str, member_rooms: int) -> float:
    """Write the history; the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        words = COMMON * 3 + RARE + FILLER * 6
        await conn.execute(
            """INSERT INTO rooms (id, kind, title, last_seq, created_by)
               SELECT gen_random_uuid(), 'group', 'room ' || g, $2, $1::uuid
                 FROM generate_series(1, $3) g""",
            searcher,
            per_room,
            rooms,
        )
        await conn.execute(
            """INSERT INTO room_members (room_id, user_id, role)
               SELECT id, $1::uuid, 'member' FROM rooms ORDER BY created_at, id LIMIT $2""",
            searcher,
            member_rooms,
        )
        await conn.execute(
            """INSERT INTO messages (room_id, seq, sender_id, client_msg_id, text)
               SELECT r.id, s, $1::uuid, 'seed-' || s,
                      (SELECT string_agg(($2::text[])[1 + floor(random() * $3)::int], ' ')
                         FROM generate_series(1, 6 + (s % 10)) w WHERE w > 0 AND r.id IS NOT NULL)
                 FROM rooms r CROSS JOIN generate_series(1, $4) s""",
            searcher,
            words,
            len(words),
            per_room,
        )
        await conn.execute("ANALYZE messages")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def measure(url: str, token: str, *, queries: int, room_id: str) -> dict[str, Any]:
    rng = random.Random(7)
    kinds = [("common", COMMON), ("rare", RARE), ("typo", ["prescripton", "ambulanse"])]
    latencies: dict[str, list[float]] = {k: [] for k, _ in kinds}
    latencies["one room"] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for n in range(queries):
            kind, pool = kinds[n % len(kinds)]
            params = {"q": rng.choice(pool), "limit": "20"}
            if n % 7 == 0:
                kind, params["room_id"] = "one room", room_id
            started = time.perf_counter()
            async with http.get(url + "/api/v1/search/messages", params=params) as response:
                await response.read()
                assert response.status == 200, response.status
            latencies[kind].append((time.perf_counter() - started) * 1000)
    every = [v for values in latencies.values() for v in values]
    every.sort()
    result: dict[str, Any] = {
        "queries": len(every),
        "p50_ms": round(statistics.median(every), 2),
        "p99_ms": round(every[max(0, int(len(every) * 0.99) - 1)], 2),
    }
    for kind, values in latencies.items():
        if values:
            result[f"{kind} p50_ms"] = round(statistics.median(values), 2)
    return result


def run(url: str, dsn: str, token: str, user_id: str, size: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        seconds = await seed(
            dsn,
            rooms=size["search_rooms"],
            per_room=size["search_per_room"],
            searcher=user_id,
            member_rooms=size["search_member_rooms"],
        )
        conn = await asyncpg.connect(dsn)
        try:
            room_id = await conn.fetchval(
                "SELECT room_id::text FROM room_members WHERE user_id = $1::uuid LIMIT 1", user_id
            )
            total = await conn.fetchval("SELECT count(*) FROM messages")
        finally:
            await conn.close()
        result = await measure(url, token, queries=size["search_queries"], room_id=room_id)
        return {
            "messages": total,
            "rooms": size["search_rooms"],
            "seed_s": round(seconds, 1),
            **result,
        }

    return asyncio.run(go())
