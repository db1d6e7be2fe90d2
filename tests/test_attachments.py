"""Attachments through both object stores: the node's signed folder and S3 (moto's server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiobotocore.session import get_session

from server.settings import UploadSettings
from tests.clients import Account, Socket, make_room
from tests.conftest import FakeClock, Running, ServerFactory, base_settings
from tests.services import S3Server, start_s3

SocketFactory = Callable[..., Socket]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(200))


@pytest.fixture
async def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3Server]:
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    server = start_s3(tmp_path / "moto.log")
    async with get_session().create_client("s3", endpoint_url=server.url) as client:
        await client.create_bucket(Bucket="lifeline-test")
    yield server
    server.stop()


async def _announce(server: Running, who: Account, **body: Any) -> tuple[int, Any]:
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/uploads", json=body, token=who.access_token
    )
    return status, answer


def _absolute(server: Running, url: str) -> str:
    return url if url.startswith("http") else server.url + url


async def _put(http: aiohttp.ClientSession, url: str, headers: dict[str, str], data: bytes) -> int:
    async with http.put(url, data=data, headers=headers) as response:
        return response.status


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as response:
        return response.status, await response.read()


async def _round_trip(
    server: Running, http: aiohttp.ClientSession, sockets: SocketFactory
) -> tuple[Account, Account, dict[str, Any], dict[str, Any]]:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob], title="Prescriptions")
    senders, readers = sockets(), sockets()
    await senders.connect(server.url, token=alice.access_token)
    await readers.connect(server.url, token=bob.access_token)
    assert (await readers.call("chat:join", {"room_id": room["id"]}))["ok"]
    status, target = await _announce(server, alice, name="rx.png", mime="image/png", size=len(PNG))
    assert status == 201, target
    assert target["method"] == "PUT" and target["expires_at"].endswith("Z")
    put_status = await _put(http, _absolute(server, target["url"]), target["headers"], PNG)
    assert put_status in (200, 204), put_status
    ack = await senders.call(
        "chat:send",
        {
            "room_id": room["id"],
            "client_msg_id": "with-rx",
            "text": "the prescription",
            "attachments": [target["upload_id"]],
        },
    )
    assert ack["ok"], ack
    attached = ack["message"]["attachments"]
    assert [(a["id"], a["name"], a["mime"], a["size"]) for a in attached] == [
        (target["upload_id"], "rx.png", "image/png", len(PNG))
    ]
    heard = (await readers.inbox.next("chat:message"))["message"]["attachments"][0]
    status, body = await _get(http, _absolute(server, heard["url"]))
    assert (status, body) == (200, PNG)
    status, history, _ = await server.api.call(
        "GET", f"/api/v1/rooms/{room['id']}/messages", token=bob.access_token
    )
    assert history["messages"][0]["attachments"][0]["id"] == target["upload_id"]
    return alice, bob, room, heard


async def test_attachments_round_trip_through_the_nodes_signed_folder(
    make_server: ServerFactory,
    db: str,
    http: aiohttp.ClientSession,
    sockets: SocketFactory,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    server = await make_server(
        replace(
            base_settings(db), uploads=UploadSettings(folder=tmp_path / "uploads", max_bytes=4096)
        )
    )
    alice, bob, room, heard = await _round_trip(server, http, sockets)
    url = _absolute(server, heard["url"])
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert (await _get(http, forged))[0] == 403
    other_id = str(uuid.uuid4())
    foreign = url.replace(heard["id"], other_id)  # a link of one upload used for another
    assert (await _get(http, foreign))[0] == 403

    # What a message may not carry, and what may not be announced.
    sender = sockets()
    await sender.connect(server.url, token=alice.access_token)

    async def carry(upload_ids: list[str]) -> dict[str, Any]:
        ack = await sender.call(
            "chat:send",
            {
                "room_id": room["id"],
                "client_msg_id": uuid.uuid4().hex,
                "text": "x",
                "attachments": upload_ids,
            },
        )
        assert ack["ok"] is False, ack
        return dict(ack["error"])

    status, fake = await _announce(server, alice, name="a.png", mime="image/png", size=5)
    assert status == 201
    assert (await carry([fake["upload_id"]]))["code"] == "invalid"  # never uploaded
    assert await _put(http, _absolute(server, fake["url"]), fake["headers"], b"hello") == 204
    assert (await carry([fake["upload_id"]]))["code"] == "invalid"  # not a PNG at all
    status, bobs = await _announce(server, bob, name="b.txt", mime="text/plain", size=2)
    assert await _put(http, _absolute(server, bobs["url"]), bobs["headers"], b"hi") == 204
    assert (await carry([bobs["upload_id"]]))["code"] == "forbidden"  # someone else's
    assert (await carry([heard["id"]]))["code"] == "invalid"  # already carried
    assert (await carry([str(uuid.uuid4()) for _ in range(11)]))["code"] == "invalid"
    status, answer = await _announce(
        server, alice, name="big.pdf", mime="application/pdf", size=5000
    )
    assert status == 413 and answer["error"]["code"] == "too_large"
    status, answer = await _announce(
        server, alice, name="x.exe", mime="application/x-msdownload", size=10
    )
    assert status == 400 and answer["error"]["code"] == "invalid"
    status, short = await _announce(server, alice, name="s.txt", mime="text/plain", size=10)
    assert await _put(http, _absolute(server, short["url"]), short["headers"], b"123") == 400
    assert (await _get(http, url))[0] == 200
    clock.advance(901)  # links live 15 minutes
    assert (await _get(http, url))[0] == 403


async def test_attachments_round_trip_through_s3(
    make_server: ServerFactory,
    db: str,
    http: aiohttp.ClientSession,
    sockets: SocketFactory,
    s3: S3Server,
) -> None:
    settings = replace(
        base_settings(db),
        uploads=UploadSettings(s3_bucket="lifeline-test", s3_prefix="t/", s3_endpoint_url=s3.url),
    )
    server = await make_server(settings)
    _, _, _, heard = await _round_trip(server, http, sockets)
    assert heard["url"].startswith(s3.url + "/lifeline-test/t/")
    # Presigned and short-lived; S3 checks the signature itself (moto's server does not
    # unless IAM is set up, so forged links are tested against the folder store).
    query = parse_qs(urlsplit(heard["url"]).query)
    assert query["X-Amz-Expires"] == ["900"] and query["X-Amz-Signature"][0]


async def test_uploads_no_message_carried_are_deleted_after_a_day(
    make_server: ServerFactory,
    db: str,
    http: aiohttp.ClientSession,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "uploads"
    server = await make_server(
        replace(base_settings(db), uploads=UploadSettings(folder=folder, sweep_every_s=0.05))
    )
    alice = await server.api.register()
    status, target = await _announce(server, alice, name="n.txt", mime="text/plain", size=4)
    assert status == 201
    assert await _put(http, _absolute(server, target["url"]), target["headers"], b"note") == 204
    stored = [p for p in folder.rglob("*") if p.is_file()]
    assert len(stored) == 1
    clock.advance(24 * 3600 + 1)
    # The sweeper runs in the background; nothing tells a test it is done, so poll.
    async with asyncio.timeout(10):
        while stored[0].exists():
            await asyncio.sleep(0.05)
