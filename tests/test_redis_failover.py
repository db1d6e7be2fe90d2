"""Redis failing over under a running cluster of Lifeline nodes: a Redis Cluster
primary killed with SIGKILL (its replica promoted), and a Sentinel-watched
primary killed the same way. Chat keeps going; every acked message reaches the
reader (live, or by the resync the contract prescribes); /readyz says so
while the bus is down.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from redis.crc import key_slot

from tests.clients import Api, ChatFollower, Socket, make_room, send
from tests.conftest import ARTIFACTS
from tests.services import (
    NodeProcess,
    RedisClusterServers,
    free_port,
    node_env,
    spawn_redis_cluster,
    spawn_sentinel,
    start_node,
)

pytestmark = [pytest.mark.cluster, pytest.mark.failover]

Start = Callable[[str], Awaitable[NodeProcess]]


@pytest.fixture
async def nodes(db: str, tmp_path: Path) -> AsyncIterator[tuple[Start, str]]:
    """Lifeline nodes on a Redis the test brings; (start(url), the key prefix)."""
    prefix = f"f{uuid.uuid4().hex[:8]}:"
    started: list[NodeProcess] = []

    async def start(redis_url: str) -> NodeProcess:
        env = node_env(
            database_url=db,
            redis_url=redis_url,
            prefix=prefix,
            port=free_port(),
            extra={"LIFELINE_CHAT_SEND_LIMIT": "1000", "LIFELINE_SOCKET_EVENT_BURST": "1000"},
        )
        node = await start_node(env, tmp_path)
        started.append(node)
        return node

    yield start, prefix
    for node in started:
        node.kill()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / node.log_path.name).write_text(node.log())


def _owner_of(servers: RedisClusterServers, channel: str) -> int:
    """The port of the primary that owns ``channel``'s slot."""
    slot = key_slot(channel.encode())
    live = next(p for p in servers.ports if servers.processes[p].poll() is None)
    for line in servers.cli(live, "cluster", "nodes").splitlines():
        fields = line.split()
        if "master" not in fields[2].split(","):
            continue
        for span in fields[8:]:
            if span.startswith("["):
                continue
            low, _, high = span.partition("-")
            if int(low) <= slot <= int(high or low):
                return int(fields[1].split(":")[1].split("@")[0])
    raise AssertionError(f"no primary owns slot {slot}")


async def _ready(http: aiohttp.ClientSession, node: NodeProcess) -> bool:
    async with http.get(node.url + "/readyz") as response:
        return response.status == 200


async def _chat_through(
    http: aiohttp.ClientSession,
    one: NodeProcess,
    two: NodeProcess,
    fail: Callable[[str], None],
) -> None:
    """Alice on one node sends; Bob follows on the other; ``fail(room channel)`` kills
    Redis mid-traffic. Every acked message reaches Bob once, in order, and live
    delivery comes back once the bus does."""
    api = Api(one.url, http)
    alice, bob = await api.register(), await api.register()
    room = await make_room(api, alice, [bob])
    follower = ChatFollower(bob.access_token, [room["id"]])
    await follower.connect(two.url)
    sender = Socket()
    await sender.connect(one.url, token=alice.access_token)
    try:
        assert (await sender.call("chat:join", {"room_id": room["id"]}))["ok"]
        acked: list[int] = []
        for n in range(30):
            acked.append((await send(sender, room["id"], f"before {n}"))["seq"])
        await follower.until(room["id"], acked[-1], timeout=10)

        fail(f"/#room:{room['id']}")
        saw_down = False
        deadline = time.monotonic() + 60
        # Keep sending through the outage: chat is durable in PostgreSQL.
        n = 0
        while True:
            ack = await send(sender, room["id"], f"during {n}")
            acked.append(ack["seq"])
            n += 1
            ready = await _ready(http, two)
            saw_down = saw_down or not ready
            if saw_down and ready:
                break
            assert time.monotonic() < deadline, "the bus did not come back within 60 s"
            await asyncio.sleep(0.05)
        assert saw_down, "/readyz never reported the bus down"

        # Live again: each new message reaches Bob (he resyncs only when a live one
        # shows him a gap, so without live delivery this waits in vain).
        for n in range(10):
            ack = await send(sender, room["id"], f"after {n}")
            acked.append(ack["seq"])
            await follower.until(room["id"], ack["seq"], timeout=10)
        seqs = [m["seq"] for m in follower.received[room["id"]]]
        assert seqs == list(range(1, acked[-1] + 1))
        assert sorted(acked) == seqs
    finally:
        await sender.close()
        await follower.close()


async def test_a_cluster_primary_killed_mid_traffic_loses_nothing_acked(
    nodes: tuple[Start, str], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    start, prefix = nodes
    servers = spawn_redis_cluster(tmp_path / "redis-cluster")
    try:
        one, two = await asyncio.gather(start(servers.url), start(servers.url))

        def kill_owner(room_key: str) -> None:
            owner = _owner_of(servers, prefix + "bus:i:" + room_key)
            servers.kill(owner)

        await _chat_through(http, one, two, kill_owner)
        assert len(servers.primaries()) == 3  # a replica took the dead primary's slots
    finally:
        servers.stop()  # its own cluster: nothing to clear


async def test_a_sentinel_failover_mid_traffic_loses_nothing_acked(
    nodes: tuple[Start, str], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    start, _ = nodes
    servers = spawn_sentinel(tmp_path / "sentinel")
    try:
        one, two = await asyncio.gather(start(servers.url), start(servers.url))
        await _chat_through(http, one, two, lambda _room: servers.kill(servers.primary))
        assert servers.current_primary() == servers.replica
    finally:
        servers.stop()
