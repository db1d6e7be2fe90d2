"""What a change owes commits with it, and events apply in whatever order they come."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from services.channels import ChannelRegistry, NotConfigured
from services.events import EventService
from services.notifications import NotificationService
from storage.archive import NoArchive
from storage.crypto import FieldCipher, parse_keys
from storage.db import Database, create_pool
from storage.deliveries import DeliveryRepository
from storage.events import Outbox
from storage.notifications import NotificationRepository
from storage.projects import ProjectRepository
from storage.users import UserRepository
from tests.clients import Socket, make_room, send
from tests.conftest import FakeClock, Running
from tests.services import API_KEY, DATA_KEYS

SocketFactory = Callable[..., Socket]


def _event(type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"{type_}-{uuid.uuid4()}",
        "type": type_,
        "occurred_at": "2026-11-22T10:00:00.000Z",
        "payload": payload,
    }


async def _events(server: Running, *envelopes: dict[str, Any]) -> tuple[int, Any]:
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/events",
        json={"events": list(envelopes)},
        headers={"X-Api-Key": API_KEY},
    )
    return status, body


async def test_a_send_whose_owed_push_fails_to_store_is_not_stored_either(
    server: Running, sockets: SocketFactory, db: str
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])  # bob has no socket: a push is owed
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    assert (await socket.call("chat:join", {"room_id": room["id"]}))["ok"]
    conn = await asyncpg.connect(db)
    try:
        # The write of the owed push fails once, inside the message's transaction.
        await conn.execute(
            """CREATE FUNCTION fail_chat_push() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'deliveries are down'; END $$;
               CREATE TRIGGER fail_chat_push BEFORE INSERT ON deliveries
                  FOR EACH ROW EXECUTE FUNCTION fail_chat_push();"""
        )
        try:
            first = await socket.call(
                "chat:send", {"room_id": room["id"], "client_msg_id": "m-1", "text": "help?"}
            )
        finally:
            await conn.execute(
                "DROP TRIGGER fail_chat_push ON deliveries; DROP FUNCTION fail_chat_push();"
            )
        assert first["ok"] is False, first
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0
        # The client's retry is the first send that commits, and it owes the push.
        message = await send(socket, room["id"], "help?", client_msg_id="m-1")
        assert message["seq"] == 1
        rows = await conn.fetch("SELECT user_id::text AS user_id, source_id FROM deliveries")
    finally:
        await conn.close()
    assert [(r["user_id"], r["source_id"]) for r in rows] == [(bob.id, message["id"])]


class _NoBlocks:
    async def blocked(self, user_id: str, *, blocked: bool) -> None:
        return None


class _BrokenPeerLink:
    """The fan-out port with its link to the sockets cut mid-emit (an outside fault)."""

    def __init__(self) -> None:
        self.attempts = 0

    async def _fail(self, *args: Any, **kwargs: Any) -> None:
        self.attempts += 1
        raise ConnectionResetError("the link to the sockets broke")

    to_user = to_users = to_room = to_project = to_channel = _fail


async def test_an_applied_event_stays_applied_when_telling_sockets_fails(
    server: Running, db: str, clock: FakeClock
) -> None:
    alice = await server.api.register()
    pool = await create_pool(db, min_size=1, max_size=2)
    try:
        cipher = FieldCipher(parse_keys(DATA_KEYS))
        broken = _BrokenPeerLink()
        database = Database(pool)
        outbox = Outbox(topic="realtime.events", enabled=False)
        notifications = NotificationService(
            db=database,
            repo=NotificationRepository(pool, cipher=cipher),
            deliveries=DeliveryRepository(pool, cipher=cipher),
            outbox=outbox,
            channels=ChannelRegistry([NotConfigured("push")]),
            archive=NoArchive(),
            fanout=broken,
            clock=clock,
            kick_deliveries=lambda: None,
        )
        events = EventService(
            db=database,
            projects=ProjectRepository(pool),
            users=UserRepository(pool, cipher=cipher),
            notifications=notifications,
            blocks=_NoBlocks(),
            fanout=broken,
            clock=clock,
        )
        envelope = _event(
            "notification.requested",
            {"user_ids": [alice.id], "kind": "news", "title": "Hi", "body": "b"},
        )
        # Committed, then the emit fails: the door sees "applied", so neither
        # POST /events answers 500 nor the Kafka consumer dead-letters it.
        assert await events.apply(envelope, source="kafka:notifications") is True
        assert broken.attempts == 1
        assert await events.apply(envelope, source="kafka:notifications") is False
    finally:
        await pool.close()
    status, found, _ = await server.api.call(
        "GET", "/api/v1/notifications", token=alice.access_token
    )
    assert status == 200 and [n["title"] for n in found["notifications"]] == ["Hi"]


async def test_every_event_naming_users_not_seen_yet_is_applied(server: Running, db: str) -> None:
    organizer, follower, payer = (str(uuid.uuid4()) for _ in range(3))
    events = [
        _event(
            "project.updated",
            {
                "project_id": "p-early",
                "organizer_id": organizer,
                "title": "Wells",
                "follower_ids": [follower],
            },
        ),
        _event(
            "donation.created",
            {
                "project_id": "p-early",
                "amount_minor": 500,
                "currency": "EUR",
                "donor_id": payer,
                "donor_display": "Ann",
            },
        ),
        _event(
            "notification.requested",
            {"user_ids": [follower], "kind": "news", "title": "t", "body": "b"},
        ),
        _event(
            "payment.succeeded",
            {"user_id": payer, "amount_minor": 500, "currency": "EUR", "project_id": "p-early"},
        ),
        _event("payment.failed", {"user_id": payer, "amount_minor": 5, "currency": "EUR"}),
        _event("lesson.completed", {"user_id": payer, "course_title": "C", "lesson_title": "L"}),
    ]
    for envelope in events:
        status, body = await _events(server, envelope)
        assert status == 202 and body == {"applied": 1, "duplicates": 0}, (envelope["type"], body)
    ticker = await server.api.call("GET", "/api/v1/projects/p-early/ticker")
    assert ticker[1]["total_minor"] == 500
    # The organizer's user.created arrives last and completes the project: the next
    # donation notifies them.
    status, body = await _events(
        server,
        _event(
            "user.created",
            {
                "user_id": organizer,
                "email": f"{organizer}@example.org",
                "display_name": "Org",
                "role": "organizer",
            },
        ),
        _event(
            "donation.created",
            {
                "project_id": "p-early",
                "amount_minor": 700,
                "currency": "EUR",
                "donor_display": "Bo",
            },
        ),
    )
    assert status == 202 and body == {"applied": 2, "duplicates": 0}, body
    conn = await asyncpg.connect(db)
    try:
        kinds = await conn.fetch(
            "SELECT kind, body FROM notifications WHERE user_id = $1::uuid", organizer
        )
    finally:
        await conn.close()
    assert [r["kind"] for r in kinds] == ["donation"]
