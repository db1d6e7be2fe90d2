"""Notification channels are a registry: a new one plugs in without touching the rest."""

from __future__ import annotations

from tests.channels import MessengerRecorder
from tests.conftest import ServerFactory
from tests.test_events import KEY, request_notification, settled


async def test_a_registered_channel_is_asked_for_switched_and_delivered(
    make_server: ServerFactory, db: str
) -> None:
    messenger = MessengerRecorder()
    server = await make_server(extra_channels=(messenger,))
    alice = await server.api.register()
    body = {"user_ids": [alice.id], "kind": "news", "title": "T", "body": "B"}
    await request_notification(server.api, {**body, "channels": ["in_app", "messenger"]})
    rows = await settled(db, "SELECT channel, status, result, user_id::text FROM deliveries")
    assert [(r["channel"], r["status"], r["user_id"]) for r in rows] == [
        ("messenger", "sent", alice.id)
    ]
    assert [(d.title, d.body, d.user_id) for d in messenger.delivered] == [("T", "B", alice.id)]
    # Preferences know the channel too: switched off for a kind, it is not used.
    status, answer, _ = await server.api.call(
        "PUT",
        "/api/v1/me/preferences",
        json={"channels": {"news": {"messenger": False}}},
        token=alice.access_token,
    )
    assert status == 200, answer
    await request_notification(server.api, {**body, "channels": ["messenger", "push"]})
    rows = await settled(db, "SELECT channel, status FROM deliveries ORDER BY id")
    assert [r["channel"] for r in rows] == ["messenger", "push"]


async def test_a_channel_nobody_registered_is_invalid(make_server: ServerFactory) -> None:
    server = await make_server()
    alice = await server.api.register()
    status, answer, _ = await server.api.call(
        "POST",
        "/api/v1/notifications",
        json={
            "user_ids": [alice.id],
            "kind": "news",
            "title": "T",
            "body": "B",
            "channels": ["messenger"],
        },
        headers=KEY,
    )
    assert status == 400 and answer["error"]["code"] == "invalid"
    assert "in_app, push, sms, email" in answer["error"]["message"]
