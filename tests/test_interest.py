"""Interest-based routing: a node hears a room's traffic only while it holds a
socket of that room (real processes, on one Redis and on a Redis Cluster)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.clients import Account, Api, Socket, make_room, send
from tests.services import API_KEY, NodeProcess

pytestmark = pytest.mark.cluster

Cluster = Callable[..., Awaitable[NodeProcess]]
SocketFactory = Callable[..., Socket]


async def bus_figures(api: Api) -> tuple[float, float]:
    """(interest messages this node received, interest channels it is subscribed to)."""
    status, text, _ = await api.call("GET", "/metrics")
    assert status == 200
    received = re.search(r'^lifeline_bus_messages_total\{kind="interest"\} (\S+)$', text, re.M)
    channels = re.search(r"^lifeline_bus_channels (\S+)$", text, re.M)
    assert channels is not None, "lifeline_bus_channels is missing from /metrics"
    return (float(received.group(1)) if received else 0.0), float(channels.group(1))


@dataclass
class Trio:
    room: dict[str, Any]
    sender: Socket  # Alice's, on the first node, in the room
    reader: Socket  # Bob's, on the second node, in the room
    bystander: Socket  # Carol's, on the third node, in no room
    bob: Account
    carol: Account


async def _room_over_three(
    api: Api, sockets: SocketFactory, one: NodeProcess, two: NodeProcess, three: NodeProcess
) -> Trio:
    """Alice in a room on the first node, Bob in it on the second, and Carol on the
    third in no room of theirs."""
    alice, bob, carol = [await api.register() for _ in range(3)]
    room = await make_room(api, alice, [bob])
    sender = sockets()
    await sender.connect(one.url, token=alice.access_token)
    assert (await sender.call("chat:join", {"room_id": room["id"]}))["ok"]
    reader = sockets()
    await reader.connect(two.url, token=bob.access_token)
    assert (await reader.call("chat:join", {"room_id": room["id"]}))["ok"]
    bystander = sockets()
    await bystander.connect(three.url, token=carol.access_token)
    return Trio(room, sender, reader, bystander, bob, carol)


async def test_a_node_without_sockets_of_a_room_receives_none_of_its_traffic(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    limits = {"LIFELINE_CHAT_SEND_LIMIT": "1000", "LIFELINE_SOCKET_EVENT_BURST": "1000"}
    one, two, three = await asyncio.gather(cluster(**limits), cluster(**limits), cluster(**limits))
    api_one, api_two, api_three = (Api(n.url, http) for n in (one, two, three))
    trio = await _room_over_three(api_one, sockets, one, two, three)
    room, sender, reader, bystander = trio.room, trio.sender, trio.reader, trio.bystander

    before_two, _ = await bus_figures(api_two)
    before_three, channels_three = await bus_figures(api_three)
    assert channels_three == 1  # carol's own channel, nothing else
    for n in range(40):
        await send(sender, room["id"], f"m{n}")
    await reader.inbox.nth("chat:message", 40, timeout=20)
    after_two, channels_two = await bus_figures(api_two)
    assert after_two - before_two >= 40
    assert channels_two == 2  # bob's user channel and the room's
    # A marker sent to Carol after the room's messages: once it has reached the third
    # node, anything of the room would have too. It must be the only thing that did.
    await _notify(api_one, trio.carol.id)
    await bystander.inbox.nth("notification", 1, timeout=10)
    after_three, _ = await bus_figures(api_three)
    assert after_three == before_three + 1

    # The last socket of the room leaves the second node: it stops listening.
    assert (await reader.call("chat:leave", {"room_id": room["id"]}))["ok"]
    settled_two, channels_two = await bus_figures(api_two)
    assert channels_two == 1
    for n in range(10):
        await send(sender, room["id"], f"after{n}")
    await _notify(api_one, trio.bob.id)
    await reader.inbox.nth("notification", 1, timeout=10)
    assert (await bus_figures(api_two))[0] == settled_two + 1


async def _notify(api: Api, user_id: str) -> None:
    """An in-app notification: one bus message, on the user's own channel."""
    status, body, _ = await api.call(
        "POST",
        "/api/v1/notifications",
        json={"user_ids": [user_id], "kind": "news", "title": "marker", "body": "b"},
        headers={"X-Api-Key": API_KEY},
    )
    assert status == 202, body


async def test_a_join_acknowledged_on_a_new_node_misses_nothing_sent_after_the_ack(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    """The first socket of a room on a node subscribes the node to the room's
    channel before the join is acknowledged."""
    one, two = await asyncio.gather(cluster(), cluster())
    api = Api(one.url, http)
    alice, bob = await api.register(), await api.register()
    sender = sockets()
    await sender.connect(one.url, token=alice.access_token)
    for attempt in range(5):  # a new room each time, so each join is the node's first
        room = await make_room(api, alice, [bob])
        assert (await sender.call("chat:join", {"room_id": room["id"]}))["ok"]
        reader = sockets()
        await reader.connect(two.url, token=bob.access_token)
        assert (await reader.call("chat:join", {"room_id": room["id"]}))["ok"]
        acked = await send(sender, room["id"], f"right after the join {attempt}")
        got = await reader.inbox.nth("chat:message", 1, timeout=5)
        assert got["message"]["seq"] == acked["seq"]
        await reader.close()


async def test_broadcast_routing_kept_for_measurement_sends_every_node_everything(
    cluster: Cluster, http: aiohttp.ClientSession, sockets: SocketFactory
) -> None:
    """LIFELINE_BUS_ROUTING=broadcast (the design before, which bench/scale.py
    measures against): the bystander node hears the room, and delivery is the same."""
    one, two, three = await asyncio.gather(
        *(cluster(LIFELINE_BUS_ROUTING="broadcast") for _ in range(3))
    )
    api_one, api_three = Api(one.url, http), Api(three.url, http)
    trio = await _room_over_three(api_one, sockets, one, two, three)
    room, sender, reader, bystander = trio.room, trio.sender, trio.reader, trio.bystander
    before, channels = await bus_figures(api_three)
    assert channels == 0
    for n in range(5):
        await send(sender, room["id"], f"m{n}")
    await reader.inbox.nth("chat:message", 5, timeout=20)
    deadline = asyncio.get_running_loop().time() + 10
    while (await bus_figures(api_three))[0] - before < 5:
        assert asyncio.get_running_loop().time() < deadline, "the bystander heard nothing"
        await asyncio.sleep(0.05)
    assert "chat:message" not in bystander.inbox.events
