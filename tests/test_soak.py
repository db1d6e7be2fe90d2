"""Soak: two nodes, a few hundred clients, mixed traffic for a long time (30 min by default).

Not in the default run (marked ``soak``): ``./scripts/test -m soak`` runs it;
``LIFELINE_SOAK_S`` and ``LIFELINE_SOAK_CLIENTS`` change its length and size. It
writes test-artifacts/soak.json with each node's memory over time and the messages
lost (acked but not received by a member who was joined all along), and fails on any loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psutil
import pytest

from tests.clients import Api, Socket, make_room
from tests.conftest import ARTIFACTS
from tests.services import API_KEY, NodeProcess

pytestmark = [pytest.mark.soak, pytest.mark.timeout(0)]


async def test_soak_two_nodes_mixed_traffic(
    cluster: Callable[..., Awaitable[NodeProcess]], http: aiohttp.ClientSession
) -> None:
    seconds = float(os.environ.get("LIFELINE_SOAK_S", "1800"))
    clients = int(os.environ.get("LIFELINE_SOAK_CLIENTS", "300"))
    extra = {"LIFELINE_CHAT_SEND_LIMIT": "100000", "LIFELINE_CONNECTIONS_PER_ADDRESS": "100000"}
    nodes = await asyncio.gather(cluster(**extra), cluster(**extra))
    apis = [Api(n.url, http) for n in nodes]
    accounts = [await apis[0].register() for _ in range(clients)]
    rooms = [
        await make_room(apis[0], accounts[i], accounts[i + 1 : i + 4])
        for i in range(0, clients - 4, 4)
    ]
    sockets: list[Socket] = []
    for n, account in enumerate(accounts):
        socket = Socket()
        await socket.connect(nodes[n % 2].url, token=account.access_token)
        sockets.append(socket)
    members: dict[str, list[int]] = {}
    for room in rooms:
        for member in room["member_ids"]:
            index = next(i for i, a in enumerate(accounts) if a.id == member)
            await sockets[index].call("chat:join", {"room_id": room["id"]})
            members.setdefault(room["id"], []).append(index)
    acked: dict[str, set[int]] = {r["id"]: set() for r in rooms}
    sent: dict[tuple[str, int], set[int]] = {}
    samples: list[dict[str, Any]] = []
    procs = [psutil.Process(n.process.pid) for n in nodes]
    deadline = time.monotonic() + seconds

    async def chatter(room: dict[str, Any]) -> None:
        while time.monotonic() < deadline:
            sender = random.choice(members[room["id"]])
            ack = await sockets[sender].call(
                "chat:send",
                {"room_id": room["id"], "client_msg_id": uuid.uuid4().hex, "text": "soak"},
            )
            if ack["ok"]:
                acked[room["id"]].add(ack["message"]["seq"])
                sent.setdefault((room["id"], sender), set()).add(ack["message"]["seq"])
            await asyncio.sleep(random.uniform(0.5, 2.0))

    async def donations() -> None:
        while time.monotonic() < deadline:
            await apis[random.randint(0, 1)].call(
                "POST",
                "/api/v1/events",
                headers={"X-Api-Key": API_KEY},
                json={
                    "event_id": str(uuid.uuid4()),
                    "type": "donation.created",
                    "occurred_at": "2026-11-22T10:00:00.000Z",
                    "payload": {
                        "project_id": "soak",
                        "amount_minor": 100,
                        "currency": "EUR",
                        "donor_display": "S",
                    },
                },
            )
            await asyncio.sleep(0.2)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append(
                {
                    "t": round(time.monotonic() - deadline + seconds, 1),
                    "rss_mb": [round(p.memory_info().rss / 2**20, 1) for p in procs],
                }
            )
            await asyncio.sleep(10)

    await asyncio.gather(*(chatter(r) for r in rooms), donations(), sampler())
    # The last messages: wait (at most 10 s) until each member has the last seq of each room.
    for room in rooms:
        last = max(acked[room["id"]], default=0)
        for index in members[room["id"]]:
            if last and last not in sent.get((room["id"], index), set()):
                inbox = sockets[index].inbox
                with contextlib.suppress(AssertionError):  # a loss is counted below
                    while (await inbox.next("chat:message", 10))["message"]["seq"] != last:
                        pass
    lost = 0
    for room in rooms:
        for index in members[room["id"]]:
            got = {
                m["message"]["seq"]
                for m in sockets[index].inbox.events["chat:message"]
                if m["message"]["room_id"] == room["id"]
            }
            own = sent.get((room["id"], index), set())  # a sender gets its acks, not events
            lost += len(acked[room["id"]] - got - own)
    report = {
        "seconds": seconds,
        "clients": clients,
        "rooms": len(rooms),
        "messages_acked": sum(len(s) for s in acked.values()),
        "lost": lost,
        "memory": samples,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "soak.json").write_text(json.dumps(report, indent=1))
    for socket in sockets:
        await socket.close()
    assert lost == 0, report
