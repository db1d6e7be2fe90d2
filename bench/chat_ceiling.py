"""Where PostgreSQL sets the ceiling of chat: the write path alone.

Every chat message is one call of the ``chat_send`` SQL function (migrations),
which takes the room's row lock to hand out the next seq. Messages into one
room are therefore serial in PostgreSQL whatever the number of nodes; messages
into different rooms are not. This measures both, with ``concurrency``
connections sending as fast as they can, without sockets or the bus: it is the
ceiling the cluster's other parts run into. Run by ``bench.scale --postgres``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.run import Server, free_port, server_env


async def _setup(url: str, rooms: int) -> tuple[str, list[str]]:
    """A sender and ``rooms`` group rooms of theirs, made through a node's REST API."""
    async with aiohttp.ClientSession() as http:
        body = {
            "email": f"ceiling-{uuid.uuid4().hex[:8]}@bench.test",
            "password": "bench password",
            "display_name": "Ceiling",
        }
        async with http.post(url + "/api/v1/auth/register", json=body) as answer:
            account = await answer.json()
        headers = {"Authorization": "Bearer " + account["access_token"]}
        made: list[str] = []
        for n in range(rooms):
            room = {"kind": "group", "title": f"ceiling {n}", "member_ids": []}
            async with http.post(url + "/api/v1/rooms", json=room, headers=headers) as answer:
                made.append((await answer.json())["room"]["id"])
    return account["user"]["id"], made


async def _hammer(
    db: str, sender: str, rooms: list[str], concurrency: int, duration: float
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(db, min_size=concurrency, max_size=concurrency)
    sent = 0
    deadline = time.perf_counter() + duration

    async def worker(n: int) -> None:
        nonlocal sent
        k = 0
        async with pool.acquire() as conn:
            while time.perf_counter() < deadline:
                room = rooms[(n + k) % len(rooms)]
                async with conn.transaction():
                    await conn.fetchrow(
                        "SELECT seq FROM chat_send($1::uuid, $2::uuid, $3, $4)",
                        room,
                        sender,
                        f"{n}-{k}-{uuid.uuid4().hex[:6]}",
                        "ceiling",
                    )
                k += 1
                sent += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return {
        "rooms": len(rooms),
        "connections": concurrency,
        "messages_per_s": round(sent / elapsed),
    }


def measure(db: str, *, concurrency: int = 16, duration: float = 8.0) -> dict[str, Any]:
    port = free_port()
    node = Server(
        "lifeline",
        port=port,
        env=server_env("lifeline", port, db=db, redis=None, prefix="ceiling"),
        log=Path(tempfile.gettempdir()) / "lifeline-ceiling-node.log",
    )
    try:
        sender, rooms = asyncio.run(_setup(node.url, 64))
    finally:
        node.stop()
    one = asyncio.run(_hammer(db, sender, rooms[:1], concurrency, duration))
    many = asyncio.run(_hammer(db, sender, rooms, concurrency, duration))
    return {"one_room": one, "many_rooms": many}
