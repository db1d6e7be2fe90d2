"""SOS on one node (and two in-process nodes sharing Redis): contacts, raise, trail, acks,
escalation and expiry moved by the injected clock, the audit of a whole run."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import asyncpg

from server.settings import Settings, SosSettings
from services.clock import iso
from tests.clients import Account, Api, Socket
from tests.conftest import FakeClock, Running, ServerFactory, base_settings, provider_settings
from tests.providers import ProviderRecorder

SocketFactory = Callable[..., Socket]
PHONE_BOB = "+4915112345678"
PHONE_DORA = "+447911123456"


async def _contact(api: Api, owner: Account, **body: Any) -> dict[str, Any]:
    status, answer, _ = await api.call(
        "POST", "/api/v1/contacts", json=body, token=owner.access_token
    )
    assert status == 201, answer
    return dict(answer["contact"])


async def _connected(sockets: SocketFactory, url: str, account: Account) -> Socket:
    socket = sockets()
    await socket.connect(url, token=account.access_token)
    return socket


async def _raise(socket: Socket, **extra: Any) -> dict[str, Any]:
    ack = await socket.call(
        "sos:raise",
        {"client_alert_id": uuid.uuid4().hex, "lat": 52.52, "lon": 13.405, **extra},
    )
    assert ack["ok"], ack
    return dict(ack["alert"])


def _sos_settings(settings: Settings, providers: ProviderRecorder) -> Settings:
    return replace(
        provider_settings(settings, providers),
        sos=SosSettings(escalate_after_s=60, escalation_levels=3, scheduler_interval_s=0.05),
    )


async def _sos_server(
    make_server: ServerFactory, db: str, providers: ProviderRecorder, **changes: Any
) -> Running:
    return await make_server(_sos_settings(base_settings(db, **changes), providers))


# -- contacts -----------------------------------------------------------------------------


async def test_contacts_are_users_or_phone_numbers_up_to_twenty(server: Running) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    as_user = await _contact(server.api, alice, user_id=bob.id, name="Bob")
    assert as_user["user_id"] == bob.id and as_user["phone"] is None
    by_phone = await _contact(server.api, alice, phone="+49 151 1234 5678", name="Dora")
    assert by_phone["phone"] == PHONE_BOB and by_phone["user_id"] is None
    bad = [
        {"name": "No way to reach"},
        {"phone": "12345", "name": "Short"},
        {"phone": "+1 555 0000 000 000", "name": "Nonsense"},
        {"user_id": alice.id, "name": "Myself"},
        {"user_id": bob.id},
        {"phone": 4915112345678, "name": "Number"},
    ]
    for body in bad:
        status, answer, _ = await server.api.call(
            "POST", "/api/v1/contacts", json=body, token=alice.access_token
        )
        assert status == 400 and answer["error"]["code"] == "invalid", body
    # A user who does not exist is not_found, as any id that names nothing.
    status, answer, _ = await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": str(uuid.uuid4()), "name": "Ghost"},
        token=alice.access_token,
    )
    assert status == 404 and answer["error"]["code"] == "not_found"
    status, answer, _ = await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": bob.id, "name": "Again"},
        token=alice.access_token,
    )
    assert status == 409
    for n in range(18):
        await _contact(server.api, alice, phone=f"+4915112345{n:03d}", name=f"C{n}")
    status, answer, _ = await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"phone": "+4915112399999", "name": "21st"},
        token=alice.access_token,
    )
    assert status == 409 and "20" in answer["error"]["message"]
    status, listing, _ = await server.api.call("GET", "/api/v1/contacts", token=alice.access_token)
    assert len(listing["contacts"]) == 20 and listing["contacts"][0] == as_user
    # Someone else's contact is not found for bob; alice deletes hers.
    path = f"/api/v1/contacts/{by_phone['id']}"
    assert (await server.api.call("DELETE", path, token=bob.access_token))[0] == 404
    assert (await server.api.call("DELETE", path, token=alice.access_token))[0] == 204
    assert (await server.api.call("DELETE", path, token=alice.access_token))[0] == 404
    status, listing, _ = await server.api.call("GET", "/api/v1/contacts", token=alice.access_token)
    assert len(listing["contacts"]) == 19


# -- raising ------------------------------------------------------------------------------


async def test_an_alert_reaches_every_contact_at_once_by_the_right_channel(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
) -> None:
    server = await _sos_server(make_server, db, providers)
    api = server.api
    alice = await api.register(display_name="Alice")
    bob, carol = await api.register(), await api.register()
    await _contact(api, alice, user_id=bob.id, name="Bob")
    await _contact(api, alice, user_id=carol.id, name="Carol")  # no socket: a push
    await _contact(api, alice, phone=PHONE_DORA, name="Dora")  # phone only: an SMS
    phone = await _connected(sockets, server.url, alice)
    tablet = await _connected(sockets, server.url, alice)
    bob_phone = await _connected(sockets, server.url, bob)
    bob_laptop = await _connected(sockets, server.url, bob)

    alert = await _raise(phone, client_alert_id="a-1", accuracy_m=12.5, note="fell")
    assert alert["status"] == "active" and alert["user_id"] == alice.id
    assert (alert["lat"], alert["lon"]) == (52.52, 13.405)
    assert alert["created_at"].endswith("Z")
    for socket in (bob_phone, bob_laptop, tablet):
        event = await socket.inbox.next("sos:alert")
        assert event["alert"] == alert
        assert event["user"] == {**alice.user}
    sms = (await providers.recorded.wait_for("sms", 1))[0]
    assert sms["To"] == PHONE_DORA and sms["From"] == "+15005550006"
    assert "Alice" in sms["Body"] and "mlat=52.52000&mlon=13.40500" in sms["Body"]
    assert re.search(r"\d\d:\d\d UTC", sms["Body"])
    # The same client_alert_id again: the first alert, and nothing new sent.
    again = await _raise(tablet, client_alert_id="a-1", lat=1.0, lon=1.0)
    assert again == alert
    status, details, _ = await api.call("GET", f"/api/v1/sos/{alert['id']}", token=bob.access_token)
    assert status == 200
    channels = sorted((d["channel"], d["user_id"] or d["address"]) for d in details["deliveries"])
    # Phone numbers are masked for everyone reading the alert.
    assert channels == [("push", carol.id), ("sms", "+44••••••3456")]
    sent_on_socket = [a["to"] for a in details["audit"] if a.get("channel") == "socket"]
    assert sent_on_socket == [bob.id]
    await bob_phone.call("sos:ack", {"alert_id": alert["id"]})
    await tablet.inbox.next("sos:acknowledged")
    assert bob_laptop.inbox.count("sos:alert") == 1 and len(providers.recorded.sms) == 1
    assert phone.inbox.count("sos:alert") == 0  # the raising socket has the ack


async def test_the_trail_keeps_one_point_a_second_and_only_the_raiser_moves_it(
    server: Running, sockets: SocketFactory, clock: FakeClock
) -> None:
    alice, bob, eve = [await server.api.register() for _ in range(3)]
    await _contact(server.api, alice, user_id=bob.id, name="Bob")
    raiser = await _connected(sockets, server.url, alice)
    contact = await _connected(sockets, server.url, bob)
    stranger = await _connected(sockets, server.url, eve)
    second = int(clock.now()) + 1
    clock.freeze(second + 0.2)
    alert = await _raise(raiser, lat=10.0, lon=20.0)
    for n in range(3):  # three points within one second: the last one is kept
        ack = await raiser.call(
            "sos:location", {"alert_id": alert["id"], "lat": 10.0 + n, "lon": 20.0, "accuracy_m": n}
        )
        assert ack == {"ok": True}
    clock.advance(1.0)
    await raiser.call("sos:location", {"alert_id": alert["id"], "lat": 13.0, "lon": 21.0})
    last = await contact.inbox.nth("sos:location", 4)
    assert last == {
        "alert_id": alert["id"],
        "lat": 13.0,
        "lon": 21.0,
        "accuracy_m": None,
        "at": iso(second + 1.2),
    }
    for who in (contact, stranger):
        ack = await who.call("sos:location", {"alert_id": alert["id"], "lat": 0, "lon": 0})
        assert ack["error"]["code"] == "forbidden"
    for bad in (
        {"alert_id": alert["id"], "lat": 91, "lon": 0},
        {"alert_id": alert["id"], "lat": 0, "lon": -181},
        {"alert_id": alert["id"], "lat": 0, "lon": 0, "accuracy_m": -1},
        {"alert_id": alert["id"], "lat": "north", "lon": 0},
    ):
        assert (await raiser.call("sos:location", bad))["error"]["code"] == "invalid"
    status, details, _ = await server.api.call(
        "GET", f"/api/v1/sos/{alert['id']}", token=bob.access_token
    )
    assert status == 200
    assert [(p["lat"], p["lon"], p["accuracy_m"]) for p in details["trail"]] == [
        (10.0, 20.0, None),
        (12.0, 20.0, 2.0),
        (13.0, 21.0, None),
    ]
    assert details["trail"][0]["at"] == alert["created_at"]
    status, _, _ = await server.api.call(
        "GET", f"/api/v1/sos/{alert['id']}", token=eve.access_token
    )
    assert status == 403


async def test_only_contacts_acknowledge_and_the_first_ack_counts(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, carol, eve = [await server.api.register() for _ in range(4)]
    await _contact(server.api, alice, user_id=bob.id, name="Bob")
    await _contact(server.api, alice, user_id=carol.id, name="Carol")
    raiser = await _connected(sockets, server.url, alice)
    bobs = await _connected(sockets, server.url, bob)
    carols = await _connected(sockets, server.url, carol)
    eves = await _connected(sockets, server.url, eve)
    alert = await _raise(raiser)
    for who in (raiser, eves):
        assert (await who.call("sos:ack", {"alert_id": alert["id"]}))["error"][
            "code"
        ] == "forbidden"
    for alert_id in (str(uuid.uuid4()), "nope"):
        assert (await bobs.call("sos:ack", {"alert_id": alert_id}))["error"]["code"] == "forbidden"
    ack = await bobs.call("sos:ack", {"alert_id": alert["id"]})
    assert ack["alert"]["status"] == "acknowledged" and ack["alert"]["acknowledged_by"] == bob.id
    later = await carols.call("sos:ack", {"alert_id": alert["id"]})
    assert later["alert"]["acknowledged_by"] == bob.id  # the first ack counts
    for socket in (raiser, bobs, carols):  # the actor's own sockets included
        assert await socket.inbox.nth("sos:acknowledged", 2) == {
            "alert_id": alert["id"],
            "by_user_id": carol.id,
        }
    assert (await eves.call("sos:resolve", {"alert_id": alert["id"]}))["error"][
        "code"
    ] == "forbidden"
    resolved = await carols.call("sos:resolve", {"alert_id": alert["id"]})
    assert resolved["alert"]["status"] == "resolved"
    assert await raiser.inbox.next("sos:resolved") == {
        "alert_id": alert["id"],
        "by_user_id": carol.id,
    }
    assert (await raiser.call("sos:resolve", {"alert_id": alert["id"]}))["alert"][
        "status"
    ] == "resolved"
    assert (await bobs.call("sos:ack", {"alert_id": alert["id"]}))["error"]["code"] == "conflict"
    ack = await raiser.call("sos:location", {"alert_id": alert["id"], "lat": 1, "lon": 1})
    assert ack["error"]["code"] == "conflict"
    assert eves.inbox.count("sos:resolved") == 0 and eves.inbox.count("sos:alert") == 0


async def test_unanswered_alerts_escalate_level_by_level_then_a_full_audit(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    clock: FakeClock,
) -> None:
    server = await _sos_server(make_server, db, providers)
    api = server.api
    alice = await api.register(display_name="Alice")
    bob = await api.register(phone=PHONE_BOB)
    await _contact(api, alice, user_id=bob.id, name="Bob")
    await _contact(api, alice, phone=PHONE_DORA, name="Dora")
    raiser = await _connected(sockets, server.url, alice)
    bobs = await _connected(sockets, server.url, bob)
    alert = await _raise(raiser)
    await providers.recorded.wait_for("sms", 1)  # Dora, at once
    # Bob's socket acked (a receipt) and Dora's SMS was accepted, before time jumps.
    steps = [await raiser.inbox.next("sos:delivery") for _ in range(2)]
    assert sorted(s["channel"] for s in steps) == ["sms", "socket"]

    clock.advance(59)
    await raiser.call("sos:location", {"alert_id": alert["id"], "lat": 52.6, "lon": 13.5})
    clock.advance(2)  # 61 s after the raise: level 1
    assert await bobs.inbox.next("sos:escalated") == {"alert_id": alert["id"], "level": 1}
    assert await raiser.inbox.next("sos:escalated") == {"alert_id": alert["id"], "level": 1}
    sms = await providers.recorded.wait_for("sms", 3)
    assert sorted(m["To"] for m in sms[1:]) == sorted([PHONE_BOB, PHONE_DORA])
    assert "mlat=52.60000&mlon=13.50000" in sms[1]["Body"]  # the latest position
    clock.advance(121)  # the next level waits twice as long
    assert await bobs.inbox.next("sos:escalated") == {"alert_id": alert["id"], "level": 2}
    await providers.recorded.wait_for("sms", 5)
    assert (await bobs.call("sos:ack", {"alert_id": alert["id"]}))["ok"]
    clock.advance(600)  # acknowledged: level 3 (due 422 s after the raise) never comes
    assert (await raiser.call("sos:resolve", {"alert_id": alert["id"]}))["ok"]
    await bobs.inbox.next("sos:resolved")
    assert bobs.inbox.count("sos:escalated") == 2 and len(providers.recorded.sms) == 5

    status, details, _ = await api.call(
        "GET", f"/api/v1/sos/{alert['id']}", token=alice.access_token
    )
    assert status == 200 and details["alert"]["status"] == "resolved"
    actions = [(a["action"], a.get("level")) for a in details["audit"] if a["action"] != "sent"]
    assert actions == [
        ("raised", None),
        ("escalated", 1),
        ("escalated", 2),
        ("acknowledged", None),
        ("resolved", None),
    ]
    assert [a["actor_id"] for a in details["audit"] if a["action"] == "acknowledged"] == [bob.id]
    sms_results = [
        (d["address"], d["status"]) for d in details["deliveries"] if d["channel"] == "sms"
    ]
    assert len(sms_results) == 5 and all(s == "sent" for _, s in sms_results)


async def test_escalation_fires_once_per_level_with_two_nodes(
    make_server: ServerFactory,
    redis_settings: Settings,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    clock: FakeClock,
) -> None:
    one = await make_server(_sos_settings(redis_settings, providers))
    two = await make_server(_sos_settings(replace(redis_settings, node_id="second"), providers))
    alice = await one.api.register()
    bob = await one.api.register(phone=PHONE_BOB)
    await _contact(one.api, alice, user_id=bob.id, name="Bob")
    raiser = await _connected(sockets, one.url, alice)
    bobs = await _connected(sockets, two.url, bob)
    alert = await _raise(raiser)
    assert (await bobs.inbox.next("sos:alert"))["alert"]["id"] == alert["id"]
    assert (await raiser.inbox.next("sos:delivery"))["channel"] == "socket"  # the receipt
    for level in (1, 2, 3):
        clock.advance(60 * 2 ** (level - 1) + 1)
        assert await bobs.inbox.next("sos:escalated") == {"alert_id": alert["id"], "level": level}
        await providers.recorded.wait_for("sms", level)
    clock.advance(400)  # three levels configured: nothing more
    assert (await bobs.call("sos:ack", {"alert_id": alert["id"]}))["ok"]
    await raiser.inbox.next("sos:acknowledged")
    assert raiser.inbox.count("sos:escalated") == 3 and bobs.inbox.count("sos:escalated") == 3
    assert len(providers.recorded.sms) == 3


async def test_an_alert_left_open_expires(
    make_server: ServerFactory, db: str, sockets: SocketFactory, clock: FakeClock
) -> None:
    settings = base_settings(db, sos=SosSettings(expire_after_s=3600, scheduler_interval_s=0.05))
    server = await make_server(settings.with_auth(access_ttl_s=7200))
    alice, bob = await server.api.register(), await server.api.register()
    await _contact(server.api, alice, user_id=bob.id, name="Bob")
    raiser = await _connected(sockets, server.url, alice)
    bobs = await _connected(sockets, server.url, bob)
    alert = await _raise(raiser)
    assert (await bobs.call("sos:ack", {"alert_id": alert["id"]}))["ok"]
    clock.advance(3601)
    for socket in (raiser, bobs):
        assert await socket.inbox.next("sos:expired") == {"alert_id": alert["id"]}
    status, details, _ = await server.api.call(
        "GET", f"/api/v1/sos/{alert['id']}", token=bob.access_token
    )
    assert status == 200 and details["alert"]["status"] == "expired"
    assert (await raiser.call("sos:resolve", {"alert_id": alert["id"]}))["error"][
        "code"
    ] == "conflict"


async def test_raise_validates_its_payload_and_stores_before_acking(
    server: Running, sockets: SocketFactory, db: str
) -> None:
    alice = await server.api.register()
    raiser = await _connected(sockets, server.url, alice)
    for bad in (
        {"lat": 1, "lon": 1},
        {"client_alert_id": "x", "lat": 90.5, "lon": 1},
        {"client_alert_id": "x", "lat": 1, "lon": 1, "accuracy_m": -3},
        {"client_alert_id": "x", "lat": float("nan"), "lon": 1},
        {"client_alert_id": "x", "lat": 1, "lon": 1, "note": "n" * 1001},
        {"client_alert_id": "", "lat": 1, "lon": 1},
    ):
        assert (await raiser.call("sos:raise", bad))["error"]["code"] == "invalid", bad
    alert = await _raise(raiser)  # no contacts at all: still stored
    conn = await asyncpg.connect(db)
    try:
        stored = await conn.fetchval(
            "SELECT status FROM sos_alerts WHERE id = $1::uuid", alert["id"]
        )
    finally:
        await conn.close()
    assert stored == "active"
    await asyncio.sleep(0)
    assert raiser.sio.connected
