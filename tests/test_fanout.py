"""The fan-out fast path and the library internals it relies on.

If python-socketio or python-engineio change what realtime/fanout.py uses, these fail
first, with a message that says what moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import socketio

from realtime.seam import engine_of
from server.app import SOCKETIO
from tests.clients import Socket, make_room, send
from tests.conftest import Running

SocketFactory = Callable[..., Socket]


async def test_the_socketio_api_fanout_uses_is_there(
    server: Running, sockets: SocketFactory
) -> None:
    """Fan-out asks python-socketio's manager for a room's participants and encodes with
    its packet class (public API), then hands the engine the sessions to write to."""
    account = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    sio = server.app[SOCKETIO]
    engine = engine_of(sio)
    ((eio_sid, _),) = engine.sessions()
    participants = list(sio.manager.get_participants("/", [f"user:{account.id}"]))
    assert participants == [(socket.sio.get_sid("/"), eio_sid)], "get_participants changed"
    assert sio.packet_class(2, namespace="/", data=["e", {"a": 1}]).encode() == '2["e",{"a":1}]'


async def test_one_broadcast_reaches_each_socket_once_and_skips_the_sender(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    clients = []
    for account in (alice, alice, bob, bob):
        client = sockets()
        await client.connect(server.url, token=account.access_token)
        await client.call("chat:join", {"room_id": room["id"]})
        clients.append(client)
    polling = sockets()
    await polling.connect(server.url, token=bob.access_token, transports=["polling"])
    await polling.call("chat:join", {"room_id": room["id"]})
    for n in range(20):
        await send(clients[0], room["id"], f"m{n}")
    for client in [*clients[1:], polling]:
        await client.inbox.nth("chat:message", 20)
        assert [m["message"]["text"] for m in client.inbox.events["chat:message"]] == [
            f"m{n}" for n in range(20)
        ]
    assert clients[0].inbox.count("chat:message") == 0


async def test_websockets_go_without_permessage_deflate(server: Running) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket", compress=15) as ws,
    ):
        assert ws.compress == 0  # offered by the client, declined by the node
        assert (await ws.receive_str()).startswith("0{")


async def test_json_and_msgpack_clients_share_rooms(server: Running) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    packed = socketio.AsyncClient(serializer="msgpack", reconnection=False)
    got: list[dict[str, object]] = []
    arrived = asyncio.Event()

    @packed.on("chat:message")
    async def on_message(data: dict[str, object]) -> None:
        got.append(data)
        arrived.set()

    await packed.connect(
        server.url,
        auth={"token": bob.access_token},
        socketio_path="socket.io-msgpack",
        transports=["websocket"],
        wait_timeout=5,
    )
    try:
        assert (await packed.call("chat:join", {"room_id": room["id"]}, timeout=5))["ok"]
        sender = Socket()
        await sender.connect(server.url, token=alice.access_token)
        await sender.call("chat:join", {"room_id": room["id"]})
        message = await send(sender, room["id"], "to both parsers")
        await asyncio.wait_for(arrived.wait(), 5)
        assert got == [{"message": message}]
        # And the other way: a msgpack client's message reaches the JSON client.
        ack = await packed.call(
            "chat:send", {"room_id": room["id"], "client_msg_id": "p1", "text": "packed"}, timeout=5
        )
        assert (await sender.inbox.next("chat:message"))["message"] == ack["message"]
        await sender.close()
    finally:
        await packed.disconnect()


async def test_disconnects_leave_exactly_their_own_rooms(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, carol = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob, carol])
    clients = []
    for account in (alice, carol, bob):
        client = sockets()
        await client.connect(server.url, token=account.access_token)
        await client.call("chat:join", {"room_id": room["id"]})
        clients.append(client)
    manager = server.app[SOCKETIO].manager
    leaving = clients[1].sio.get_sid("/")
    assert set(manager.get_rooms(leaving, "/")) == {
        leaving,
        f"user:{carol.id}",
        f"room:{room['id']}",
    }
    await clients[1].close()
    # The room hears carol went offline from the disconnect handler; python-socketio
    # clears the manager right after it, with no event of its own to await.
    while (await clients[0].inbox.next("presence"))["user_id"] != carol.id:
        pass

    def members() -> set[str]:
        return {sid for sid, _ in manager.get_participants("/", f"room:{room['id']}")}

    async with asyncio.timeout(2):
        while leaving in members():
            await asyncio.sleep(0.01)
    assert len(members()) == 2
    assert manager.get_rooms(leaving, "/") == []
    message = await send(clients[0], room["id"], "still here")
    assert (await clients[2].inbox.next("chat:message"))["message"] == message
