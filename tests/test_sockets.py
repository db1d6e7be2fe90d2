"""Socket.IO doors: authenticated `/`, public `/live`, flat acks, no dropped sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import socketio

from tests.clients import Socket
from tests.conftest import Running


async def _refused(server: Running, sockets: Callable[..., Socket], token: object) -> object:
    """The CONNECT_ERROR payload the server answered."""
    socket = sockets()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await socket.sio.connect(
            server.url,
            auth={"token": token} if token is not None else None,
            transports=["websocket"],
            wait_timeout=5,
        )
    assert len(socket.connect_errors) == 1
    return socket.connect_errors[0]


async def test_main_namespace_requires_a_valid_token(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    for token in (None, "", "garbage", account.refresh_token, 12345):
        assert await _refused(server, sockets, token) == {"message": "unauthorized"}
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    assert socket.sio.connected


async def test_live_namespace_is_public(server: Running, sockets: Callable[..., Socket]) -> None:
    socket = sockets()
    await socket.connect(server.url, namespace="/live")
    assert socket.sio.connected


async def test_long_polling_works_on_a_single_node(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=account.access_token, transports=["polling"])
    assert socket.sio.transport() == "polling"
    status, _, _ = await server.api.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{account.id}", "event": "hello", "data": {"n": 1}},
        headers={"X-Api-Key": "test-api-key"},
    )
    assert status == 202
    assert await socket.inbox.next("hello") == {"n": 1}


@pytest.mark.parametrize("parser", ["json", "msgpack"])
@pytest.mark.parametrize(
    "transports",
    [["websocket"], ["polling"], ["polling", "websocket"]],
    ids=["websocket", "polling", "upgrade"],
)
async def test_the_python_client_on_every_transport_and_parser(
    server: Running, sockets: Callable[..., Socket], transports: list[str], parser: str
) -> None:
    account = await server.api.register()
    socket = sockets(msgpack=parser == "msgpack")
    await socket.connect(server.url, token=account.access_token, transports=transports)
    deadline = asyncio.get_running_loop().time() + 5
    while socket.sio.transport() != transports[-1]:  # the upgrade, when there is one
        assert asyncio.get_running_loop().time() < deadline, socket.sio.transport()
        await asyncio.sleep(0.02)
    ack = await socket.call("chat:sync", {"rooms": {}})
    assert ack["ok"] is True
    status, _, _ = await server.api.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{account.id}", "event": "hello", "data": {"n": [1, 2.5]}},
        headers={"X-Api-Key": "test-api-key"},
    )
    assert status == 202
    assert await socket.inbox.next("hello") == {"n": [1, 2.5]}


async def test_unknown_events_get_no_ack_and_are_counted(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    with pytest.raises(socketio.exceptions.TimeoutError):
        await socket.sio.call("no:such:event", {"x": 1}, timeout=1)
    assert socket.sio.connected
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert 'lifeline_unknown_events_total{namespace="/"} 1.0' in metrics


async def test_publish_reaches_every_socket_of_the_user_only(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    alice = await server.api.register()
    bob = await server.api.register()
    phone, laptop, other = sockets(), sockets(), sockets()
    await phone.connect(server.url, token=alice.access_token)
    await laptop.connect(server.url, token=alice.access_token)
    await other.connect(server.url, token=bob.access_token)
    data = {"nested": [1, {"b": None}], "text": "ünï"}
    status, _, _ = await server.api.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{alice.id}", "event": "custom:thing", "data": data},
        headers={"X-Api-Key": "test-api-key"},
    )
    assert status == 202
    assert await phone.inbox.next("custom:thing") == data
    assert await laptop.inbox.next("custom:thing") == data
    # Bob's socket got nothing: a ping to Bob arrives, and nothing came before it.
    await server.api.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{bob.id}", "event": "marker", "data": 1},
        headers={"X-Api-Key": "test-api-key"},
    )
    await other.inbox.next("marker")
    assert other.inbox.count("custom:thing") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"channel": "nothing", "event": "x", "data": 1},
        {"channel": "user:", "event": "x", "data": 1},
        {"channel": "user:1", "event": "connect", "data": 1},
        {"channel": "user:1", "event": "x"},
        {"channel": 5, "event": "x", "data": 1},
    ],
)
async def test_publish_rejects_bad_channels(server: Running, body: dict[str, object]) -> None:
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/publish", json=body, headers={"X-Api-Key": "test-api-key"}
    )
    assert status == 400 and answer["error"]["code"] == "invalid"


async def test_logout_disconnects_the_tokens_sockets(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    other_login = await server.api.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": account.user["email"], "password": account.password},
    )
    revoked, kept = sockets(), sockets()
    await revoked.connect(server.url, token=account.access_token)
    await kept.connect(server.url, token=other_login[1]["access_token"])
    status, _, _ = await server.api.call("POST", "/api/v1/auth/logout", token=account.access_token)
    assert status == 204
    await asyncio.wait_for(revoked.disconnected.wait(), 5)
    assert kept.sio.connected
    assert await _refused(server, sockets, account.access_token) == {"message": "unauthorized"}


async def test_oversize_frames_are_refused_and_the_node_goes_on(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    offender, bystander = sockets(), sockets()
    await offender.connect(server.url, token=account.access_token)
    await bystander.connect(server.url, token=account.access_token)
    await offender.emit("chat:send", {"room_id": "r", "client_msg_id": "m", "text": "x" * 70_000})
    # A frame over the limit is not read into a message: that connection is closed.
    await asyncio.wait_for(offender.disconnected.wait(), 5)
    # Others are unaffected, and the node still serves.
    assert bystander.sio.connected
    assert (await server.api.call("GET", "/healthz"))[0] == 200
