"""History's second tier on MongoDB: moved past the hot window, read as one history."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from server.settings import ArchiveSettings, LimitSettings
from tests.clients import Account, Socket, make_room, send
from tests.conftest import Running, ServerFactory, base_settings
from tests.services import API_KEY, DATA_KEYS, JWT_SECRET, MongoServer, start_mongo

SocketFactory = Callable[..., Socket]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = start_mongo(tmp_path_factory.mktemp("mongo") / "secantus.log")
    yield server
    server.stop()


@pytest.fixture
def archive_db() -> str:
    return "lifeline_" + uuid.uuid4().hex[:10]


@pytest.fixture
async def archived(mongo: MongoServer, archive_db: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.url, tz_aware=True)
    yield client[archive_db]
    await client.close()


async def _node(make_server: ServerFactory, db: str, mongo: MongoServer, name: str) -> Running:
    # The node reads both tiers; its own mover waits an hour, the tests move with the CLI.
    archive = ArchiveSettings(mongodb_url=mongo.url, database=name, hot_days=0, every_s=3600)
    chatty = LimitSettings(chat_send_per_window=1000)
    return await make_server(replace(base_settings(db), archive=archive, limits=chatty))


async def _archive_now(
    db: str, mongo: MongoServer, name: str, tmp_path: Path, *, batch: int = 500
) -> asyncio.subprocess.Process:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")},
        "DATABASE_URL": db,
        "MONGODB_URL": mongo.url,
        "LIFELINE_MONGODB_DATABASE": name,
        "LIFELINE_HOT_DAYS": "0",
        "LIFELINE_ARCHIVE_BATCH": str(batch),
        "LIFELINE_DATA_DIR": str(tmp_path),
        "LIFELINE_JWT_SECRET": JWT_SECRET,
        "LIFELINE_DATA_KEYS": DATA_KEYS,
        "LIFELINE_API_KEY": API_KEY,
        "LIFELINE_LOG_LEVEL": "WARNING",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "archive",
        "--now",
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _run_archive(db: str, mongo: MongoServer, name: str, tmp_path: Path) -> str:
    process = await _archive_now(db, mongo, name, tmp_path)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def _count(db: str, table: str) -> int:
    conn = await asyncpg.connect(db)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def _history(server: Running, who: Account, room_id: str, limit: int) -> list[int]:
    seqs: list[int] = []
    before = ""
    while True:
        status, page, _ = await server.api.call(
            "GET",
            f"/api/v1/rooms/{room_id}/messages?limit={limit}{before}",
            token=who.access_token,
        )
        assert status == 200, page
        if not page["messages"]:
            return seqs
        seqs += [m["seq"] for m in page["messages"]]
        before = f"&before_seq={page['messages'][-1]['seq']}"


async def test_history_sync_and_notifications_read_across_the_tier_boundary(
    make_server: ServerFactory,
    db: str,
    mongo: MongoServer,
    archive_db: str,
    archived: Any,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await _node(make_server, db, mongo, archive_db)
    alice, bob = await server.api.register(), await server.api.register(phone="+4915112345678")
    room = await make_room(server.api, alice, [bob], title="Long story")
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    for n in range(25):
        await send(socket, room["id"], f"old {n}")
    for n in range(3):
        status, _, _ = await server.api.call(
            "POST",
            "/api/v1/notifications",
            json={
                "user_ids": [bob.id],
                "kind": "news",
                "title": f"old {n}",
                "body": "b",
                "channels": ["in_app", "sms"],
            },
            headers={"X-Api-Key": API_KEY},
        )
        assert status == 202
    # Wait for the SMS deliveries to be finished (skipped: not configured), so they move too.
    async with asyncio.timeout(10):
        while await _count(db, "deliveries WHERE status = 'pending'"):
            await asyncio.sleep(0.05)
    out = await _run_archive(db, mongo, archive_db, tmp_path)
    assert "archived" in out
    assert await _count(db, "messages") == 0 and await _count(db, "notifications") == 0
    assert await _count(db, "deliveries") == 0
    assert await archived["messages"].count_documents({}) == 25
    # Personal data stays sealed: the SMS's number and text as ciphertext.
    delivery = await archived["deliveries"].find_one({"channel": "sms"})
    assert delivery["address"].startswith("enc1:") and "4915112345678" not in str(delivery)

    for n in range(10):
        await send(socket, room["id"], f"new {n}")
    assert await _history(server, bob, room["id"], limit=8) == list(range(35, 0, -1))
    ack = await socket.call("chat:sync", {"rooms": {room["id"]: 0}})
    assert [m["seq"] for m in ack["messages"][room["id"]]] == list(range(1, 36))
    assert [m["text"] for m in ack["messages"][room["id"]][:2]] == ["old 0", "old 1"]
    ack = await socket.call("chat:sync", {"rooms": {room["id"]: 20}})
    assert [m["seq"] for m in ack["messages"][room["id"]]] == list(range(21, 36))
    status, _, _ = await server.api.call(
        "POST",
        "/api/v1/notifications",
        json={"user_ids": [bob.id], "kind": "news", "title": "new", "body": "b"},
        headers={"X-Api-Key": API_KEY},
    )
    assert status == 202
    status, found, _ = await server.api.call("GET", "/api/v1/notifications", token=bob.access_token)
    assert [n["title"] for n in found["notifications"]] == ["new", "old 2", "old 1", "old 0"]
    status, ready, _ = await server.api.call("GET", "/readyz")
    assert status == 200 and ready["checks"]["mongodb"] == "ok"


async def test_a_mover_killed_mid_run_repeats_without_loss_or_duplicates(
    make_server: ServerFactory,
    db: str,
    mongo: MongoServer,
    archive_db: str,
    archived: Any,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await _node(make_server, db, mongo, archive_db)
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob], title="Many")
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    for n in range(60):
        await send(socket, room["id"], f"m {n}")
    process = await _archive_now(db, mongo, archive_db, tmp_path, batch=1)
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 30)
    assert first.startswith(b"moved"), first
    process.send_signal(signal.SIGKILL)
    await process.wait()
    left = await _count(db, "messages")
    assert 0 < left < 60  # killed part-way
    await _run_archive(db, mongo, archive_db, tmp_path)
    assert await _count(db, "messages") == 0
    assert await archived["messages"].count_documents({}) == 60
    assert await _history(server, bob, room["id"], limit=50) == list(range(60, 0, -1))
