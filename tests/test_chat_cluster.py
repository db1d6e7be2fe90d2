"""Chat across two real server processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.clients import Account, Api, ChatFollower, Socket, make_room, send
from tests.services import NodeProcess

pytestmark = pytest.mark.cluster

Cluster = Callable[..., Awaitable[NodeProcess]]
SocketFactory = Callable[..., Socket]


async def _joined(sockets: SocketFactory, url: str, account: Account, room_id: str) -> Socket:
    socket = sockets()
    await socket.connect(url, token=account.access_token)
    ack = await socket.call("chat:join", {"room_id": room_id})
    assert ack["ok"], ack
    return socket


async def test_concurrent_sends_from_two_nodes_get_seq_1_to_1000_delivered_once(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    one, two = await asyncio.gather(
        cluster(LIFELINE_CHAT_SEND_LIMIT="1000", LIFELINE_SOCKET_EVENT_BURST="1000"),
        cluster(LIFELINE_CHAT_SEND_LIMIT="1000", LIFELINE_SOCKET_EVENT_BURST="1000"),
    )
    api = Api(one.url, http)
    users = [await api.register(display_name=f"user {n}") for n in range(20)]
    room = await make_room(api, users[0], users[1:], title="everyone")
    clients = [
        await _joined(sockets, (one, two)[n % 2].url, user, room["id"])
        for n, user in enumerate(users)
    ]

    async def chatter(n: int, socket: Socket) -> list[int]:
        return [
            (await send(socket, room["id"], f"{n}:{k}", client_msg_id=f"{n}-{k}"))["seq"]
            for k in range(50)
        ]

    acked = await asyncio.gather(*(chatter(n, s) for n, s in enumerate(clients)))
    assert sorted(seq for seqs in acked for seq in seqs) == list(range(1, 1001))
    for socket, own in zip(clients, acked, strict=True):
        await socket.inbox.nth("chat:message", 950, timeout=30)
        seen = [m["message"]["seq"] for m in socket.inbox.events["chat:message"]]
        assert len(seen) == len(set(seen)) == 950
        assert sorted(seen + own) == list(range(1, 1001))
    _, body, _ = await api.call("GET", f"/api/v1/rooms/{room['id']}", token=users[5].access_token)
    assert body["room"]["last_seq"] == 1000


async def test_a_client_that_resyncs_on_the_other_node_misses_nothing(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    one, two = await asyncio.gather(
        cluster(LIFELINE_CHAT_SEND_LIMIT="1000", LIFELINE_SOCKET_EVENT_BURST="1000"),
        cluster(LIFELINE_CHAT_SEND_LIMIT="1000", LIFELINE_SOCKET_EVENT_BURST="1000"),
    )
    api = Api(one.url, http)
    alice, bob = await api.register(), await api.register()
    room = await make_room(api, bob, [alice])
    follower = ChatFollower(alice.access_token, [room["id"]])
    await follower.connect(one.url)
    sender = await _joined(sockets, two.url, bob, room["id"])
    total = 300
    acked: list[dict[str, Any]] = []

    async def stream() -> None:
        for n in range(total):
            acked.append(await send(sender, room["id"], f"m{n}"))

    streaming = asyncio.create_task(stream())
    await follower.until(room["id"], 40)
    await follower.close()  # the phone loses its connection mid-stream...
    await asyncio.sleep(0)
    await follower.connect(two.url)  # ...and the load balancer sends it to the other node
    await streaming
    await follower.until(room["id"], total)
    await follower.close()
    got = follower.received[room["id"]]
    assert [m["seq"] for m in got] == list(range(1, total + 1))
    assert got == acked


async def test_presence_and_limits_hold_across_nodes(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    one, two = await asyncio.gather(
        cluster(LIFELINE_CHAT_SEND_LIMIT="6"), cluster(LIFELINE_CHAT_SEND_LIMIT="6")
    )
    api = Api(one.url, http)
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await make_room(api, alice, [bob, carol])
    socket_a = await _joined(sockets, one.url, alice, room["id"])
    socket_b = sockets()
    await socket_b.connect(two.url, token=bob.access_token)
    ack = await socket_b.call("chat:join", {"room_id": room["id"]})
    assert sorted(ack["online_user_ids"]) == sorted([alice.id, bob.id])
    assert (await socket_a.inbox.next("presence"))["user_id"] == bob.id
    # A retry on the other node answers the first message and broadcasts nothing.
    first = await send(socket_a, room["id"], "hi", client_msg_id="same")
    socket_b_alice = await _joined(sockets, two.url, alice, room["id"])
    assert await send(socket_b_alice, room["id"], "hi", client_msg_id="same") == first
    assert (await socket_b.inbox.next("chat:message"))["message"] == first
    # The send budget is per user, whichever node the sends go to.
    results = []
    for n in range(6):
        socket = (socket_a, socket_b_alice)[n % 2]
        results.append(
            await socket.call(
                "chat:send", {"room_id": room["id"], "client_msg_id": f"r{n}", "text": "x"}
            )
        )
    # 2 sends were already counted (the first and its retry): 4 more fit.
    assert [r["ok"] for r in results] == [True] * 4 + [False] * 2
    assert results[-1]["error"]["code"] == "rate_limited"
    await socket_b.inbox.nth("chat:message", 5)
    assert [m["message"]["seq"] for m in socket_b.inbox.events["chat:message"]] == [1, 2, 3, 4, 5]
    # Typing crosses nodes too.
    await socket_b.call("chat:typing", {"room_id": room["id"], "typing": True})
    assert (await socket_a.inbox.next("chat:typing"))["user_id"] == bob.id


async def test_presence_goes_offline_and_nothing_acked_is_lost_when_a_node_is_killed(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    one, two = await asyncio.gather(cluster(), cluster())
    api = Api(one.url, http)
    alice, bob = await api.register(), await api.register()
    room = await make_room(api, alice, [bob])
    watcher = await _joined(sockets, one.url, alice, room["id"])
    doomed = await _joined(sockets, two.url, bob, room["id"])
    assert (await watcher.inbox.next("presence"))["status"] == "online"
    acked = [await send(doomed, room["id"], f"before the crash {n}") for n in range(10)]
    two.kill()  # SIGKILL: no goodbye, its Redis entries are left to expire
    started = asyncio.get_running_loop().time()
    offline = await watcher.inbox.next("presence", timeout=10)
    assert offline == {"room_id": room["id"], "user_id": bob.id, "status": "offline"}
    assert asyncio.get_running_loop().time() - started < 10
    status, body, _ = await api.call(
        "GET", f"/api/v1/rooms/{room['id']}/messages", token=alice.access_token
    )
    assert status == 200 and list(reversed(body["messages"])) == acked
    ack = await watcher.call("chat:join", {"room_id": room["id"]})
    assert ack["online_user_ids"] == [alice.id]
    # Bob comes back through the surviving node and resyncs.
    follower = ChatFollower(bob.access_token, [room["id"]])
    await follower.connect(one.url)
    await follower.until(room["id"], 10)
    await follower.close()
    assert follower.received[room["id"]] == acked
    assert uuid.UUID(acked[0]["id"])
