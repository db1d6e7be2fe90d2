"""SOS across real server processes: delivery on every node, escalation after a SIGKILL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest

from server.settings import Settings, SosSettings
from tests.clients import Api, Socket
from tests.conftest import FakeClock, ServerFactory, provider_settings
from tests.providers import ProviderRecorder
from tests.services import NodeProcess
from tests.test_events import settled

pytestmark = pytest.mark.cluster

Cluster = Callable[..., Awaitable[NodeProcess]]
SocketFactory = Callable[..., Socket]


async def test_raiser_on_one_node_reaches_contacts_on_the_other_and_by_sms(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    sockets: SocketFactory,
    providers: ProviderRecorder,
) -> None:
    one, two = await asyncio.gather(cluster(**providers.env()), cluster(**providers.env()))
    api_one, api_two = Api(one.url, http), Api(two.url, http)
    alice = await api_one.register(display_name="Alice")
    bob, carol, dan = [await api_two.register() for _ in range(3)]
    for contact in (bob, carol):
        status, _, _ = await api_one.call(
            "POST",
            "/api/v1/contacts",
            json={"user_id": contact.id, "name": "c"},
            token=alice.access_token,
        )
        assert status == 201
    await api_one.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": dan.id, "name": "Dan (offline)"},
        token=alice.access_token,
    )
    await api_one.call(
        "POST",
        "/api/v1/contacts",
        json={"phone": "+447911123456", "name": "Neighbour"},
        token=alice.access_token,
    )
    raiser = sockets()
    await raiser.connect(one.url, token=alice.access_token)
    watchers = []
    for account in (bob, carol, bob):
        socket = sockets()
        await socket.connect(two.url, token=account.access_token)
        watchers.append(socket)
    ack = await raiser.call(
        "sos:raise", {"client_alert_id": "k1", "lat": -33.8688, "lon": 151.2093}
    )
    assert ack["ok"]
    alert = ack["alert"]
    for socket in watchers:
        event = await socket.inbox.next("sos:alert")
        assert event["alert"]["id"] == alert["id"] and event["user"]["display_name"] == "Alice"
    sms = await providers.recorded.wait_for("sms", 1)
    assert sms[0]["To"] == "+447911123456" and "mlat=-33.86880" in sms[0]["Body"]
    await raiser.call("sos:location", {"alert_id": alert["id"], "lat": -33.87, "lon": 151.21})
    for socket in watchers:
        assert (await socket.inbox.next("sos:location"))["lat"] == -33.87
    # A retry from another socket, through the other node: same alert, nothing new.
    retry = sockets()
    await retry.connect(two.url, token=alice.access_token)
    again = await retry.call("sos:raise", {"client_alert_id": "k1", "lat": 0, "lon": 0})
    assert again["alert"] == alert
    ack = await watchers[1].call("sos:ack", {"alert_id": alert["id"]})
    assert ack["alert"]["status"] == "acknowledged"
    assert (await raiser.inbox.next("sos:acknowledged"))["by_user_id"] == carol.id
    status, details, _ = await api_two.call(
        "GET", f"/api/v1/sos/{alert['id']}", token=bob.access_token
    )
    assert status == 200
    pushes = [d for d in details["deliveries"] if d["channel"] == "push"]
    assert [p["user_id"] for p in pushes] == [dan.id]  # bob and carol had sockets
    assert all(w.inbox.count("sos:alert") == 1 for w in watchers)


async def test_escalation_goes_on_after_the_accepting_node_is_killed(
    cluster: Cluster,
    http: aiohttp.ClientSession,
    sockets: SocketFactory,
    providers: ProviderRecorder,
    make_server: ServerFactory,
    redis_settings: Settings,
    clock: FakeClock,
    db: str,
) -> None:
    doomed = await cluster(**providers.env())
    survivor = await make_server(
        replace(
            provider_settings(redis_settings, providers),
            sos=SosSettings(scheduler_interval_s=0.05),
        )
    )
    api = Api(doomed.url, http)
    alice = await api.register()
    bob = await api.register(phone="+4915112345678")
    status, _, _ = await api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": bob.id, "name": "Bob"},
        token=alice.access_token,
    )
    assert status == 201
    raiser = sockets()
    await raiser.connect(doomed.url, token=alice.access_token)
    bobs = sockets()
    await bobs.connect(survivor.url, token=bob.access_token)
    ack = await raiser.call(
        "sos:raise", {"client_alert_id": uuid.uuid4().hex, "lat": 48.85, "lon": 2.35}
    )
    assert ack["ok"]
    alert_id = ack["alert"]["id"]
    assert (await bobs.inbox.next("sos:alert"))["alert"]["id"] == alert_id
    # Bob's socket acked it (a receipt): no fallback push is owed when time jumps.
    assert (await raiser.inbox.next("sos:delivery"))["channel"] == "socket"
    doomed.kill()
    clock.advance(61)
    assert await bobs.inbox.next("sos:escalated") == {"alert_id": alert_id, "level": 1}
    sms = await providers.recorded.wait_for("sms", 1)
    assert sms[0]["To"] == "+4915112345678" and "mlat=48.85000" in sms[0]["Body"]
    # The provider has it; the survivor records the outcome a moment later.
    await settled(db, "SELECT status FROM deliveries WHERE channel = 'sms'")
    status, details, _ = await survivor.api.call(
        "GET", f"/api/v1/sos/{alert_id}", token=bob.access_token
    )
    assert status == 200 and details["alert"]["escalation_level"] == 1
    assert [d["status"] for d in details["deliveries"] if d["channel"] == "sms"] == ["sent"]
