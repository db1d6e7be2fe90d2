"""Faults: Redis gone for a while, PostgreSQL connections killed, a client that stops
reading. Each checks that nothing acknowledged is lost or duplicated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from server.settings import LimitSettings
from tests.clients import Api, ChatFollower, Socket, make_room, send
from tests.conftest import ServerFactory
from tests.services import API_KEY, free_port, node_env, spawn_redis, start_node

pytestmark = pytest.mark.reliability

SocketFactory = Callable[..., Socket]


async def _until(check: Callable[[], Any], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_redis_outage_keeps_local_chat_and_resumes_cross_node(
    db: str, http: aiohttp.ClientSession, sockets: SocketFactory, tmp_path: Path
) -> None:
    redis = spawn_redis()
    nodes = []
    try:
        for _ in range(2):
            env = node_env(
                database_url=db, redis_url=redis.url, prefix="fault:", port=free_port(), extra={}
            )
            nodes.append(await start_node(env, tmp_path))
        one, two = nodes
        api_one, api_two = Api(one.url, http), Api(two.url, http)
        alice, bob, carol = [await api_one.register() for _ in range(3)]
        room = await make_room(api_one, alice, [bob, carol])
        sender = sockets()
        await sender.connect(one.url, token=alice.access_token)
        await sender.call("chat:join", {"room_id": room["id"]})
        local = sockets()
        await local.connect(one.url, token=bob.access_token)
        await local.call("chat:join", {"room_id": room["id"]})
        remote = ChatFollower(carol.access_token, [room["id"]])
        await remote.connect(two.url)
        acked = [await send(sender, room["id"], "before")]
        await remote.until(room["id"], 1)

        redis.stop()
        stopped = time.monotonic()
        # Local delivery goes on; readiness says Redis is down.
        for n in range(5):
            acked.append(await send(sender, room["id"], f"during {n}"))
        assert (await local.inbox.nth("chat:message", 6))["message"]["text"] == "during 4"
        for api in (api_one, api_two):
            status, body, _ = await api.call("GET", "/readyz")
            assert status == 503 and body["checks"]["redis"] == "down"
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - stopped)))  # the outage lasts 10 s

        restarted = spawn_redis(redis.port)
        try:

            async def ready() -> bool:
                results = [await api.call("GET", "/readyz") for api in (api_one, api_two)]
                return all(status == 200 for status, _, _ in results)

            await _until(ready, 30)
            # Cross-node delivery resumes by itself...
            acked.append(await send(sender, room["id"], "after"))
            await remote.until(room["id"], len(acked), timeout=20)
            # ...and the remote client, following the resync recipe, has every acked message once.
            assert remote.received[room["id"]] == acked
        finally:
            await remote.close()
            restarted.stop()
    finally:
        for node in nodes:
            node.kill()
        redis.stop()


async def test_killed_database_connections_fail_cleanly_and_the_pool_recovers(
    make_server: ServerFactory, db: str, sockets: SocketFactory
) -> None:
    server = await make_server(
        limits=LimitSettings(chat_send_per_window=10_000, socket_event_burst=10_000)
    )
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    await socket.call("chat:join", {"room_id": room["id"]})
    acks: list[dict[str, Any]] = []
    stop = asyncio.Event()
    answered = asyncio.Event()

    async def traffic() -> None:
        n = 0
        while not stop.is_set():
            acks.append(
                await socket.call(
                    "chat:send", {"room_id": room["id"], "client_msg_id": f"m{n}", "text": f"m{n}"}
                )
            )
            answered.set()
            n += 1

    async def acks_grow_by(count: int, *, ok_only: bool = False) -> None:
        """Let the traffic go on until it has had ``count`` more (successful) answers."""

        def seen() -> int:
            return sum(1 for a in acks if a["ok"]) if ok_only else len(acks)

        target = seen() + count
        async with asyncio.timeout(20):
            while seen() < target:
                answered.clear()
                await answered.wait()

    running = asyncio.create_task(traffic())
    admin = await asyncpg.connect(db)
    try:
        for _ in range(5):  # kill every connection of the app, five times, mid-traffic
            await acks_grow_by(5)
            await admin.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            )
    finally:
        await admin.close()
    await acks_grow_by(10, ok_only=True)  # the pool has recovered
    stop.set()
    await running
    failures = [a["error"]["code"] for a in acks if not a["ok"]]
    assert set(failures) <= {"unavailable"}
    ok = [a["message"] for a in acks if a["ok"]]
    assert len(ok) > 10
    # After the storm the pool serves again, and what is stored is exactly what was acked.
    last = await send(socket, room["id"], "after the storm")
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT seq, client_msg_id FROM messages WHERE room_id = $1::uuid ORDER BY seq",
            room["id"],
        )
    finally:
        await conn.close()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))  # no gap, no duplicate
    stored = {r["client_msg_id"] for r in rows}
    assert {m["text"] for m in ok} <= stored and last["seq"] == rows[-1]["seq"]
    # A send that failed with "unavailable" may have committed (the ack was lost), and a
    # retry with its client_msg_id then answers it instead of storing it twice.
    for n, ack in enumerate(acks):
        if not ack["ok"]:
            retry = await send(socket, room["id"], f"m{n}", client_msg_id=f"m{n}")
            assert retry["text"] == f"m{n}"
    status, _, _ = await server.api.call("GET", "/readyz")
    assert status == 200


async def test_a_client_that_stops_reading_is_cut_off_and_others_are_not(
    make_server: ServerFactory, sockets: SocketFactory
) -> None:
    server = await make_server(
        limits=LimitSettings(socket_queue_max=50, socket_buffer_max_bytes=1024 * 1024)
    )
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    reader = sockets()
    await reader.connect(server.url, token=alice.access_token)
    await reader.call("chat:join", {"room_id": room["id"]})
    # A raw Engine.IO/Socket.IO client that joins the room, then never reads again.
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket", max_msg_size=0)
    assert (await ws.receive_str()).startswith("0")
    await ws.send_str("40" + orjson.dumps({"token": bob.access_token}).decode())
    assert (await ws.receive_str()).startswith("40")
    await ws.send_str('421["chat:join",' + orjson.dumps({"room_id": room["id"]}).decode() + "]")
    assert (await ws.receive_str()).startswith("431")
    blob = "x" * 60_000
    for n in range(300):
        status, _, _ = await server.api.call(
            "POST",
            "/api/v1/publish",
            json={"channel": f"room:{room['id']}", "event": "bulk", "data": {"n": n, "blob": blob}},
            headers={"X-Api-Key": API_KEY},
        )
        assert status == 202
    # The reading client got everything, in order.
    last = await reader.inbox.nth("bulk", 300, timeout=30)
    assert last["n"] == 299
    assert [e["n"] for e in reader.inbox.events["bulk"]] == list(range(300))

    async def cut_off() -> bool:
        _, metrics, _ = await server.api.call("GET", "/metrics")
        return 'lifeline_connections_refused_total{reason="slow_reader"} 1.0' in metrics

    await _until(cut_off, 20)
    await ws.close()
    await http.close()
    assert reader.sio.connected
