"""Two real server processes sharing PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from tests.clients import Api, Socket
from tests.services import API_KEY, NodeProcess

pytestmark = pytest.mark.cluster


async def _two_nodes(
    cluster: Callable[..., Awaitable[NodeProcess]], http: aiohttp.ClientSession
) -> list[tuple[NodeProcess, Api]]:
    nodes = await asyncio.gather(cluster(), cluster())
    return [(node, Api(node.url, http)) for node in nodes]


async def test_emit_on_one_node_reaches_a_socket_on_the_other(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
    sockets: Callable[..., Socket],
) -> None:
    (one, api_one), (two, api_two) = await _two_nodes(cluster, http)
    account = await api_one.register()
    socket = sockets()
    await socket.connect(two.url, token=account.access_token)
    status, _, _ = await api_one.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{account.id}", "event": "news", "data": {"from": "node one"}},
        headers={"X-Api-Key": API_KEY},
    )
    assert status == 202
    assert await socket.inbox.next("news") == {"from": "node one"}
    # And the other way round, to a socket on node one.
    socket_one = sockets()
    await socket_one.connect(one.url, token=account.access_token)
    await api_two.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{account.id}", "event": "news", "data": {"from": "node two"}},
        headers={"X-Api-Key": API_KEY},
    )
    assert await socket_one.inbox.next("news") == {"from": "node two"}
    assert await socket.inbox.next("news") == {"from": "node two"}
    # Each socket got each event exactly once.
    await asyncio.sleep(0)
    assert socket.inbox.count("news") == 2 and socket_one.inbox.count("news") == 1


async def test_logout_on_one_node_is_seen_by_the_other(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
    sockets: Callable[..., Socket],
) -> None:
    (_one, api_one), (two, api_two) = await _two_nodes(cluster, http)
    account = await api_one.register()
    assert (await api_two.call("GET", "/api/v1/me", token=account.access_token))[0] == 200
    socket = sockets()
    await socket.connect(two.url, token=account.access_token)
    status, _, _ = await api_one.call("POST", "/api/v1/auth/logout", token=account.access_token)
    assert status == 204
    status, body, _ = await api_two.call("GET", "/api/v1/me", token=account.access_token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    await asyncio.wait_for(socket.disconnected.wait(), 5)


async def test_refresh_reuse_on_one_node_disconnects_sockets_on_the_other(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
    sockets: Callable[..., Socket],
) -> None:
    (_one, api_one), (two, api_two) = await _two_nodes(cluster, http)
    account = await api_one.register()
    status, rotated, _ = await api_one.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert status == 200
    socket = sockets()
    await socket.connect(two.url, token=rotated["access_token"])
    # A thief replays the first refresh token on node one.
    status, _, _ = await api_one.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert status == 401
    await asyncio.wait_for(socket.disconnected.wait(), 5)
    assert (await api_two.call("GET", "/api/v1/me", token=rotated["access_token"]))[0] == 401


async def test_three_nodes_starting_at_once_migrate_once(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
) -> None:
    nodes = await asyncio.gather(cluster(), cluster(), cluster())
    for node in nodes:
        status, body, _ = await Api(node.url, http).call("GET", "/readyz")
        assert status == 200, body
        assert body["checks"] == {"postgres": "ok", "redis": "ok", "redis_pubsub": "ok"}


async def test_sigterm_tells_clients_and_exits_in_time(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
    sockets: Callable[..., Socket],
) -> None:
    node = await cluster(redis=False)
    account = await Api(node.url, http).register()
    socket = sockets(reconnection=True)
    await socket.connect(node.url, token=account.access_token)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = await asyncio.to_thread(node.terminate)
    assert code == 0
    assert loop.time() - started < 10
    await asyncio.wait_for(socket.disconnected.wait(), 5)
    # The transport was closed (not a Socket.IO disconnect), so the client tries to
    # reconnect (behind a load balancer: to another node) instead of giving up.
    assert socket.sio._reconnect_task is not None
    socket.sio.reconnection = False
    await socket.sio.disconnect()
