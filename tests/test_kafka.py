"""Kafka end to end against a real Kafka-protocol broker (Tansu): consumers, dead letters,
broker restarts, a consumer group of two nodes, and the outbox producer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.clients import Api, Socket, make_room, send
from tests.conftest import Running, ServerFactory, base_settings
from tests.services import KAFKA_TOPICS, KafkaBroker, NodeProcess

pytestmark = pytest.mark.cluster

SocketFactory = Callable[..., Socket]


def envelope(type_: str, payload: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "occurred_at": "2026-11-22T10:00:00.000Z",
        "payload": payload,
    }


async def produce(broker: KafkaBroker, topic: str, *values: Any, key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            await producer.send_and_wait(topic, raw, key=key.encode() if key else None)
    finally:
        await producer.stop()


async def read_topic(broker: KafkaBroker, topic: str, count: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id="reader-" + uuid.uuid4().hex,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    found += [orjson.loads(r.value) for r in records]
    except TimeoutError:
        raise AssertionError(f"{count} records expected on {topic}, got {found}") from None
    finally:
        await consumer.stop()
    return found


def notify(user_id: str, title: str, event_id: str | None = None) -> dict[str, Any]:
    return envelope(
        "notification.requested",
        {"user_ids": [user_id], "kind": "news", "title": title, "body": "b"},
        event_id,
    )


async def _kafka_server(make_server: ServerFactory, db: str, broker: KafkaBroker) -> Running:
    return await make_server(base_settings(db, kafka_bootstrap_servers=broker.bootstrap))


async def _wait_ready(api: Api, ready: bool, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            status, _, _ = await api.call("GET", "/readyz")
            if (status == 200) == ready:
                return
            await asyncio.sleep(0.2)


async def test_events_from_kafka_reach_sockets_once_and_poison_goes_to_the_dlq(
    make_server: ServerFactory, db: str, kafka: KafkaBroker, sockets: SocketFactory
) -> None:
    server = await _kafka_server(make_server, db, kafka)
    alice = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    viewer = sockets()
    await viewer.connect(server.url, namespace="/live")
    await viewer.call("live:subscribe", {"project_id": "p-k"}, namespace="/live")
    same = notify(alice.id, "once", event_id="evt-1")
    await produce(
        kafka,
        "notifications",
        same,
        b"{not json",
        {"no": "envelope"},
        envelope("mystery.happened", {}),
        same,
        notify(alice.id, "after the poison"),
        key=alice.id,
    )
    await produce(
        kafka,
        "donations",
        envelope(
            "donation.created",
            {"project_id": "p-k", "amount_minor": 700, "currency": "EUR", "donor_display": "Kim"},
        ),
        key="p-k",
    )
    assert (await socket.inbox.nth("notification", 1, timeout=30))["title"] == "once"
    assert (await socket.inbox.nth("notification", 2, timeout=30))["title"] == "after the poison"
    donation = await viewer.inbox.next("donation", timeout=30)
    assert donation["total_minor"] == 700 and donation["donation"]["donor_display"] == "Kim"
    newcomer = str(uuid.uuid4())
    await produce(
        kafka,
        "users",
        envelope(
            "user.created",
            {"user_id": newcomer, "email": "k@example.org", "display_name": "K", "role": "donor"},
        ),
    )
    await produce(
        kafka,
        "projects",
        envelope(
            "project.updated",
            {
                "project_id": "p-k",
                "organizer_id": alice.id,
                "title": "Bridge",
                "follower_ids": [alice.id, newcomer],
            },
        ),
        envelope(
            "payment.succeeded", {"user_id": alice.id, "amount_minor": 100, "currency": "EUR"}
        ),
        envelope(
            "lesson.completed",
            {"user_id": alice.id, "course_title": "Aid", "lesson_title": "Bandages"},
        ),
        key="p-k",
    )
    later = [await socket.inbox.nth("notification", n, timeout=30) for n in (3, 4, 5)]
    assert [n["kind"] for n in later] == ["project_update", "payment", "lesson"]
    dead = await read_topic(kafka, "notifications.dlq", 3)
    assert [d["offset"] for d in dead] == [1, 2, 3]
    assert "JSON" in dead[0]["error"] and dead[0]["value"] == "{not json"
    assert "event_id" in dead[1]["error"] and "unknown event type" in dead[2]["error"]
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert (
        'lifeline_kafka_records_total{outcome="dead_letter",topic="notifications"} 3.0' in metrics
    )
    assert 'lifeline_kafka_records_total{outcome="duplicate",topic="notifications"} 1.0' in metrics


async def test_consumption_resumes_by_itself_after_a_broker_restart(
    make_server: ServerFactory, db: str, kafka: KafkaBroker, sockets: SocketFactory
) -> None:
    server = await _kafka_server(make_server, db, kafka)
    alice = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    await produce(kafka, "notifications", notify(alice.id, "before"), key=alice.id)
    await socket.inbox.nth("notification", 1, timeout=30)
    await _wait_ready(server.api, True)
    kafka.stop()
    await _wait_ready(server.api, False)
    status, body, _ = await server.api.call("GET", "/readyz")
    assert status == 503 and body["checks"]["kafka"] == "down"
    kafka.start()
    await kafka.create_topics(KAFKA_TOPICS + [t + ".dlq" for t in KAFKA_TOPICS[:4]])
    await produce(kafka, "notifications", notify(alice.id, "after"), key=alice.id)
    assert (await socket.inbox.nth("notification", 2, timeout=60))["title"] == "after"
    await _wait_ready(server.api, True)


async def test_the_outbox_publishes_what_was_committed_while_the_broker_was_down(
    make_server: ServerFactory, db: str, kafka: KafkaBroker, sockets: SocketFactory
) -> None:
    server = await _kafka_server(make_server, db, kafka)
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    await socket.call("chat:join", {"room_id": room["id"]})
    first = await send(socket, room["id"], "while the broker is up")
    kafka.stop()
    second = await send(socket, room["id"], "while the broker is down")
    ack = await socket.call("sos:raise", {"client_alert_id": "o-1", "lat": 1.0, "lon": 2.0})
    assert ack["ok"]
    kafka.start()
    await kafka.create_topics(KAFKA_TOPICS)
    events = await read_topic(kafka, "realtime.events", 2, timeout=60)
    by_type = {e["type"]: e for e in events}
    assert by_type["chat.message_sent"]["payload"]["message_id"] == second["id"]
    assert by_type["sos.raised"]["payload"]["alert_id"] == ack["alert"]["id"]
    assert first["seq"] == 1 and second["seq"] == 2


async def test_two_nodes_in_one_group_apply_each_event_once(
    cluster: Callable[..., Awaitable[NodeProcess]],
    http: aiohttp.ClientSession,
    kafka: KafkaBroker,
    sockets: SocketFactory,
) -> None:
    one, two = await asyncio.gather(
        cluster(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap),
        cluster(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap),
    )
    api = Api(one.url, http)
    users = [await api.register() for _ in range(6)]
    inboxes = []
    for n, user in enumerate(users):
        socket = sockets()
        await socket.connect((one, two)[n % 2].url, token=user.access_token)
        inboxes.append(socket)
    for round_ in range(5):
        for user in users:
            await produce(kafka, "notifications", notify(user.id, f"r{round_}"), key=user.id)
    for socket in inboxes:
        got = [await socket.inbox.nth("notification", n, timeout=60) for n in range(1, 6)]
        # One key's events stay in order, and each arrives once.
        assert [g["title"] for g in got] == [f"r{n}" for n in range(5)]
    await asyncio.sleep(0)
    assert all(s.inbox.count("notification") == 5 for s in inboxes)
    for node in (one, two):
        status, body, _ = await Api(node.url, http).call("GET", "/readyz")
        assert status == 200 and body["checks"]["kafka"] == "ok"
