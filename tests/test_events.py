"""Events from other services through POST /events, notifications on every channel,
donation tickers on /live. Providers are local recorders spoken to by the real SDKs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from server.settings import ProviderSettings, Settings
from tests.clients import Account, Api, Socket
from tests.conftest import Running, ServerFactory, base_settings
from tests.providers import FCM_PROJECT, ProviderRecorder, SmtpRecorder
from tests.services import API_KEY

SocketFactory = Callable[..., Socket]
KEY = {"X-Api-Key": API_KEY}


def envelope(type_: str, payload: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": type_,
        "occurred_at": "2026-11-22T10:00:00.000Z",
        "payload": payload,
    }


async def post_events(api: Api, *events: dict[str, Any]) -> dict[str, Any]:
    body: Any = events[0] if len(events) == 1 else {"events": list(events)}
    status, answer, _ = await api.call("POST", "/api/v1/events", json=body, headers=KEY)
    assert status == 202, answer
    return dict(answer)


async def request_notification(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    """The server API's POST /notifications, which must answer 202."""
    status, answer, _ = await api.call("POST", "/api/v1/notifications", json=body, headers=KEY)
    assert status == 202, answer
    return dict(answer)


async def settled(db: str, query: str) -> list[asyncpg.Record]:
    """Rows of deliveries once none is pending: the worker sends in the background and
    nothing tells a test it is done, so this polls (at most 10 s)."""
    conn = await asyncpg.connect(db)
    try:
        async with asyncio.timeout(10):
            while True:
                rows = await conn.fetch(query)
                if rows and all(r["status"] != "pending" for r in rows):
                    return rows
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def _connected(sockets: SocketFactory, server: Running, account: Account) -> Socket:
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    return socket


def with_providers(
    settings: Settings, providers: ProviderRecorder, smtp: SmtpRecorder, tmp_path: Path
) -> Settings:
    env = providers.env()
    return replace(
        settings,
        providers=ProviderSettings(
            twilio_account_sid=env["TWILIO_ACCOUNT_SID"],
            twilio_auth_token=env["TWILIO_AUTH_TOKEN"],
            twilio_from=env["TWILIO_FROM_NUMBER"],
            twilio_base_url=env["LIFELINE_TWILIO_BASE_URL"],
            fcm_credentials_file=str(providers.service_account(tmp_path / "fcm.json")),
            fcm_base_url=providers.url,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_tls=False,
            smtp_from="Lifeline <alerts@lifeline.test>",
        ),
    )


async def test_donations_move_the_ticker_once_per_event_and_tell_the_organizer(
    server: Running, sockets: SocketFactory
) -> None:
    organizer = await server.api.register(role="organizer")
    watcher = await _connected(sockets, server, organizer)
    await post_events(
        server.api,
        envelope(
            "project.updated",
            {
                "project_id": "p-1",
                "organizer_id": organizer.id,
                "title": "Wells",
                "follower_ids": [],
            },
        ),
    )
    viewer = sockets()
    await viewer.connect(server.url, namespace="/live")
    ack = await viewer.call("live:subscribe", {"project_id": "p-1"}, namespace="/live")
    assert ack == {
        "ok": True,
        "ticker": {
            "project_id": "p-1",
            "title": "Wells",  # tickers grew the project's title and goal
            "goal_minor": None,
            "total_minor": 0,
            "currency": None,
            "donors_count": 0,
            "recent": [],
        },
    }
    gift = envelope(
        "donation.created",
        {
            "project_id": "p-1",
            "amount_minor": 2500,
            "currency": "EUR",
            "donor_id": "d-1",
            "donor_display": "Ann",
            "message": "Good luck",
        },
    )
    assert await post_events(server.api, gift) == {"applied": 1, "duplicates": 0}
    assert await post_events(server.api, gift) == {"applied": 0, "duplicates": 1}
    assert await viewer.inbox.next("donation") == {
        "project_id": "p-1",
        "total_minor": 2500,
        "currency": "EUR",
        "donors_count": 1,
        "donation": {
            "amount_minor": 2500,
            "donor_display": "Ann",
            "message": "Good luck",
            "at": "2026-11-22T10:00:00.000Z",
        },
    }
    note = await watcher.inbox.next("notification")
    assert note["kind"] == "donation" and "Ann gave 25.00 EUR" in note["body"]
    # The same donor again does not count twice; an anonymous one does.
    await post_events(
        server.api,
        envelope(
            "donation.created",
            {
                "project_id": "p-1",
                "amount_minor": 500,
                "currency": "EUR",
                "donor_id": "d-1",
                "donor_display": "Ann",
            },
        ),
        envelope(
            "donation.created",
            {
                "project_id": "p-1",
                "amount_minor": 100,
                "currency": "EUR",
                "donor_display": "Anonymous",
            },
        ),
    )
    third = await viewer.inbox.nth("donation", 3)
    assert (third["total_minor"], third["donors_count"]) == (3100, 2)
    status, ticker, _ = await server.api.call("GET", "/api/v1/projects/p-1/ticker")
    assert status == 200 and ticker["total_minor"] == 3100 and len(ticker["recent"]) == 3
    assert viewer.inbox.count("donation") == 3
    status, zero, _ = await server.api.call("GET", "/api/v1/projects/never-heard/ticker")
    assert zero == {
        "project_id": "never-heard",
        "title": None,
        "goal_minor": None,
        "total_minor": 0,
        "currency": None,
        "donors_count": 0,
        "recent": [],
    }
    # Another currency for the same project is refused, and changes nothing.
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/events",
        json=envelope(
            "donation.created",
            {"project_id": "p-1", "amount_minor": 1, "currency": "USD", "donor_display": "X"},
        ),
        headers=KEY,
    )
    assert status == 400 and "currency" in body["error"]["message"]


async def test_concurrent_donations_add_up_in_the_database(server: Running) -> None:
    events = [
        envelope(
            "donation.created",
            {
                "project_id": "p-race",
                "amount_minor": n + 1,
                "currency": "EUR",
                "donor_id": f"d{n % 7}",
                "donor_display": f"D{n}",
            },
        )
        for n in range(60)
    ]
    await asyncio.gather(*(post_events(server.api, e) for e in events))
    _, ticker, _ = await server.api.call("GET", "/api/v1/projects/p-race/ticker")
    assert ticker["total_minor"] == sum(range(1, 61)) and ticker["donors_count"] == 7
    assert len(ticker["recent"]) == 10


async def test_every_event_type_reaches_the_people_it_concerns(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    sockets_of = {a.id: await _connected(sockets, server, a) for a in (alice, bob)}
    newcomer = str(uuid.uuid4())
    await post_events(
        server.api,
        envelope(
            "user.created",
            {
                "user_id": newcomer,
                "email": "new@example.org",
                "display_name": "New",
                "role": "donor",
            },
        ),
        envelope(
            "project.updated",
            {
                "project_id": "p-9",
                "organizer_id": alice.id,
                "title": "School roof",
                "follower_ids": [bob.id, newcomer],
            },
        ),
        envelope(
            "payment.succeeded",
            {"user_id": alice.id, "amount_minor": 1999, "currency": "EUR", "payment_id": "pay-1"},
        ),
        envelope(
            "payment.failed",
            {"user_id": bob.id, "amount_minor": 500, "currency": "JPY", "reason": "card declined"},
        ),
        envelope(
            "lesson.completed",
            {"user_id": bob.id, "course_title": "First aid", "lesson_title": "CPR"},
        ),
        envelope(
            "notification.requested",
            {
                "user_ids": [alice.id, "ghost"],
                "kind": "news",
                "title": "Hello",
                "body": "World",
                "data": {"x": 1},
            },
        ),
    )
    bob_notes = [await sockets_of[bob.id].inbox.nth("notification", n) for n in (1, 2, 3)]
    assert [n["kind"] for n in bob_notes] == ["project_update", "payment", "lesson"]
    assert bob_notes[0]["title"] == "School roof" and bob_notes[0]["data"] == {"project_id": "p-9"}
    assert "500 JPY" in bob_notes[1]["body"] and "card declined" in bob_notes[1]["body"]
    assert "CPR" in bob_notes[2]["body"]
    alice_notes = [await sockets_of[alice.id].inbox.nth("notification", n) for n in (1, 2)]
    assert alice_notes[0]["title"] == "Payment received" and "19.99 EUR" in alice_notes[0]["body"]
    assert alice_notes[1] == {
        **alice_notes[1],
        "kind": "news",
        "title": "Hello",
        "body": "World",
        "data": {"x": 1},
    }
    assert alice_notes[1]["created_at"].endswith("Z")
    # The user created by another service is known: a notification for them is stored.
    body = await request_notification(
        server.api,
        {"user_ids": [newcomer, "nobody"], "kind": "welcome", "title": "Hi", "body": "!"},
    )
    assert len(body["ids"]) == 1 and body["unknown"] == ["nobody"]


async def test_bad_events_are_refused_with_the_reason(server: Running) -> None:
    cases = [
        {"type": "user.created", "occurred_at": "2026-11-22T10:00:00Z", "payload": {}},
        envelope("no.such.type", {}),
        envelope(
            "donation.created",
            {"project_id": "p", "amount_minor": -5, "currency": "EUR", "donor_display": "x"},
        ),
        envelope(
            "donation.created",
            {"project_id": "p", "amount_minor": 5, "currency": "euro", "donor_display": "x"},
        ),
        envelope("user.created", {"user_id": "not-a-uuid", "email": "a@b.c", "display_name": "A"}),
        {**envelope("lesson.completed", {}), "occurred_at": "yesterday"},
        {"events": []},
        {"events": "x"},
    ]
    for body in cases:
        status, answer, _ = await server.api.call("POST", "/api/v1/events", json=body, headers=KEY)
        assert status == 400 and answer["error"]["code"] == "invalid", (body, answer)
    status, _, _ = await server.api.call("POST", "/api/v1/events", json=envelope("x", {}))
    assert status == 401


async def test_notification_history_unread_filter_and_read_marks(
    server: Running, sockets: SocketFactory
) -> None:
    alice = await server.api.register()
    socket = await _connected(sockets, server, alice)
    body = await request_notification(
        server.api, {"user_ids": [alice.id], "kind": "news", "title": "One", "body": "1"}
    )
    first = body["ids"][0]
    await request_notification(
        server.api,
        {
            "user_ids": [alice.id],
            "kind": "news",
            "title": "Two",
            "body": "2",
            "channels": ["push"],
        },
    )
    assert (await socket.inbox.next("notification"))["id"] == first
    assert await socket.call("notification:read", {"ids": [first, "junk"]}) == {"ok": True}
    _, listing, _ = await server.api.call("GET", "/api/v1/notifications", token=alice.access_token)
    assert [(n["title"], n["read"]) for n in listing["notifications"]] == [
        ("Two", False),
        ("One", True),
    ]
    _, unread, _ = await server.api.call(
        "GET", "/api/v1/notifications?unread_only=true", token=alice.access_token
    )
    assert [n["title"] for n in unread["notifications"]] == ["Two"]
    status, _, _ = await server.api.call(
        "GET", "/api/v1/notifications?unread_only=yes", token=alice.access_token
    )
    assert status == 400
    assert socket.inbox.count("notification") == 1  # "Two" asked for push only


async def test_push_sms_and_email_go_through_the_real_sdks(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    smtp: SmtpRecorder,
    tmp_path: Path,
) -> None:
    server = await make_server(with_providers(base_settings(db), providers, smtp, tmp_path))
    alice = await server.api.register(email="alice@example.org", phone="+4915112345678")
    for token in ("token-phone", "token-gone"):
        status, device, _ = await server.api.call(
            "POST",
            "/api/v1/devices",
            json={"platform": "android", "push_token": token},
            token=alice.access_token,
        )
        assert status == 201 and device["device"]["push_token"] == token
    providers.recorded.unregistered.add("token-gone")
    body = await request_notification(
        server.api,
        {
            "user_ids": [alice.id],
            "kind": "news",
            "title": "Water",
            "body": "Clean water!",
            "data": {"project_id": "p-1", "n": 3},
            "channels": ["push", "sms", "email"],
        },
    )
    push = (await providers.recorded.wait_for("push", 1))[0]
    assert push["project"] == FCM_PROJECT
    message = push["message"]
    assert message["fid"] == "token-phone"
    assert message["notification"] == {"title": "Water", "body": "Clean water!"}
    assert message["data"] == {
        "kind": "news",
        "project_id": "p-1",
        "n": "3",
        "notification_id": body["ids"][0],
    }
    sms = (await providers.recorded.wait_for("sms", 1))[0]
    assert sms["To"] == "+4915112345678" and sms["Body"] == "Clean water!"
    mail = (await smtp.wait_for(1))[0]
    assert mail["To"] == "alice@example.org" and mail["Subject"] == "Water"
    assert mail["From"] == "Lifeline <alerts@lifeline.test>"
    assert mail.get_payload().strip() == "Clean water!"
    rows = await settled(db, "SELECT channel, status FROM deliveries ORDER BY channel")
    assert [(r["channel"], r["status"]) for r in rows] == [
        ("email", "sent"),
        ("push", "sent"),
        ("sms", "sent"),
    ]
    conn = await asyncpg.connect(db)
    try:
        tokens = await conn.fetch("SELECT push_token FROM devices")
    finally:
        await conn.close()
    assert [t["push_token"] for t in tokens] == ["token-phone"]  # FCM said "unregistered"


async def test_transient_provider_failures_are_retried(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    smtp: SmtpRecorder,
    tmp_path: Path,
) -> None:
    server = await make_server(with_providers(base_settings(db), providers, smtp, tmp_path))
    alice = await server.api.register(phone="+4915112345678")
    providers.recorded.failures["sms"] = [503, 500]
    await request_notification(
        server.api,
        {
            "user_ids": [alice.id],
            "kind": "news",
            "title": "first",
            "body": "B",
            "channels": ["sms"],
        },
    )
    # Backoff is 2 s then 4 s of real time; the third attempt gets through.
    sms = await providers.recorded.wait_for("sms", 1, timeout=15)
    assert sms[0]["Body"] == "B"
    providers.recorded.failures["sms"] = [400]
    await request_notification(
        server.api,
        {
            "user_ids": [alice.id],
            "kind": "news",
            "title": "never",
            "body": "never",
            "channels": ["sms"],
        },
    )
    (row,) = await settled(
        db, "SELECT status, attempts, result FROM deliveries WHERE title = 'never'"
    )
    assert (row["status"], row["attempts"], row["result"]) == ("failed", 1, "twilio 400")
    (first,) = await settled(db, "SELECT status, attempts FROM deliveries WHERE title = 'first'")
    assert (first["status"], first["attempts"]) == ("sent", 3)


async def test_preferences_switch_channels_off_and_quiet_hours_delay_them(
    server: Running, db: str
) -> None:
    alice = await server.api.register()
    status, body, _ = await server.api.call(
        "GET", "/api/v1/me/preferences", token=alice.access_token
    )
    assert body["preferences"] == {"channels": {}, "quiet_hours": None, "time_zone": "UTC"}
    prefs = {
        "channels": {"news": {"push": False}},
        "quiet_hours": {"start": "00:00", "end": "23:59"},
        "time_zone": "Europe/Berlin",
    }
    status, body, _ = await server.api.call(
        "PUT", "/api/v1/me/preferences", json=prefs, token=alice.access_token
    )
    assert status == 200 and body["preferences"] == prefs
    for bad in (
        {"time_zone": "Mars/Olympus"},
        {"channels": {"news": {"fax": True}}},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"channels": []},
    ):
        status, _, _ = await server.api.call(
            "PUT", "/api/v1/me/preferences", json=bad, token=alice.access_token
        )
        assert status == 400, bad
    for kind in ("news", "digest", "sos"):
        await request_notification(
            server.api, {"user_ids": [alice.id], "kind": kind, "title": kind, "body": "b"}
        )
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            """SELECT kind, next_attempt_at > now() + interval '1 minute' AS later
                 FROM deliveries WHERE channel = 'push' ORDER BY kind"""
        )
    finally:
        await conn.close()
    # news: push switched off; digest: held until quiet hours end; sos: never held.
    assert [(r["kind"], r["later"]) for r in rows] in (
        [("digest", True), ("sos", False)],
        # 23:59-00:00 Berlin time is outside the quiet hours.
        [("digest", False), ("sos", False)],
    )


async def test_without_credentials_deliveries_are_recorded_as_skipped(
    server: Running, db: str
) -> None:
    alice = await server.api.register(phone="+4915112345678")
    await request_notification(
        server.api,
        {
            "user_ids": [alice.id],
            "kind": "news",
            "title": "T",
            "body": "B",
            "channels": ["push", "sms", "email"],
        },
    )
    rows = await settled(db, "SELECT channel, status, result FROM deliveries ORDER BY channel")
    assert [(r["channel"], r["status"], r["result"]) for r in rows] == [
        ("email", "skipped", "not configured"),
        ("push", "skipped", "not configured"),
        ("sms", "skipped", "not configured"),
    ]
