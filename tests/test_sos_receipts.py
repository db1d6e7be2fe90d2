"""SOS trusts receipts, not presence: acks, fallback pushes and SMS, catch-up, provider receipts."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from twilio.request_validator import RequestValidator

from server.settings import Settings, SosSettings
from tests.clients import Account, Api, Socket, make_room, send
from tests.conftest import FakeClock, Running, ServerFactory, base_settings, provider_settings
from tests.contract import contract
from tests.providers import TWILIO_TOKEN, ProviderRecorder
from tests.services import NodeProcess
from tests.test_js_client import JS, _node

SocketFactory = Callable[..., Socket]
Cluster = Callable[..., Awaitable[NodeProcess]]
PHONE_DORA = "+447911123456"


def _receipt_settings(
    settings: Settings, providers: ProviderRecorder, tmp_path: Path, *, push: bool = True
) -> Settings:
    return replace(
        provider_settings(settings, providers, fcm_file=tmp_path / "fcm.json" if push else None),
        sos=SosSettings(escalate_after_s=60, scheduler_interval_s=0.05, socket_ack_s=5),
    )


async def _contact(api: Api, owner: Account, **body: Any) -> dict[str, Any]:
    status, answer, _ = await api.call(
        "POST", "/api/v1/contacts", json=body, token=owner.access_token
    )
    assert status == 201, answer
    return dict(answer["contact"])


async def _device(api: Api, account: Account, token: str) -> None:
    status, answer, _ = await api.call(
        "POST",
        "/api/v1/devices",
        json={"platform": "android", "push_token": token},
        token=account.access_token,
    )
    assert status == 201, answer


async def _connected(sockets: SocketFactory, url: str, account: Account) -> Socket:
    socket = sockets()
    await socket.connect(url, token=account.access_token)
    return socket


async def _raise(socket: Socket) -> dict[str, Any]:
    ack = await socket.call(
        "sos:raise", {"client_alert_id": uuid.uuid4().hex, "lat": 52.52, "lon": 13.405}
    )
    assert ack["ok"], ack
    return dict(ack["alert"])


async def _details(api: Api, account: Account, alert_id: str) -> dict[str, Any]:
    status, details, _ = await api.call(
        "GET", f"/api/v1/sos/{alert_id}", token=account.access_token
    )
    assert status == 200, details
    return dict(details)


class SilentPhone:
    """A raw Engine.IO WebSocket that completes CONNECT on / and then hears nothing:
    it neither reads, acks nor answers pings (an app suspended in the background)."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, url: str, token: str) -> None:
        self.ws = await self._http.ws_connect(
            url + "/socket.io/?EIO=4&transport=websocket", autoping=False
        )
        opened = await self.ws.receive_str(timeout=5)
        assert opened.startswith("0{"), opened
        await self.ws.send_str("40" + json.dumps({"token": token}))
        connected = await self.ws.receive_str(timeout=5)
        assert connected.startswith("40{"), connected
        # From here on nothing is read: whatever the server sends sits unheard.

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def silent_phones(http: aiohttp.ClientSession) -> Any:
    made: list[SilentPhone] = []

    def factory() -> SilentPhone:
        phone = SilentPhone(http)
        made.append(phone)
        return phone

    yield factory
    for phone in made:
        await phone.close()


async def test_a_silent_socket_gets_a_push_in_the_ack_window_and_an_acking_one_does_not(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    silent_phones: Callable[[], SilentPhone],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    server = await make_server(_receipt_settings(base_settings(db), providers, tmp_path))
    api = server.api
    alice = await api.register(display_name="Alice")
    bob, carol = await api.register(), await api.register()
    bob_contact = await _contact(api, alice, user_id=bob.id, name="Bob")
    carol_contact = await _contact(api, alice, user_id=carol.id, name="Carol")
    await _device(api, bob, "token-bob")
    await _device(api, carol, "token-carol")
    raiser = await _connected(sockets, server.url, alice)
    await _connected(sockets, server.url, bob)  # python-socketio acks what asks for it
    suspended = silent_phones()
    assert carol.access_token
    await suspended.connect(server.url, carol.access_token)

    alert = await _raise(raiser)
    reached = await raiser.inbox.next("sos:delivery")
    assert reached == {
        "alert_id": alert["id"],
        "contact_id": bob_contact["id"],
        "user_id": bob.id,
        "channel": "socket",
        "status": "reached",
        "at": reached["at"],
    }
    # Carol's socket looks connected but never acks: at the end of the window, a push.
    clock.advance(5.5)
    pushes = await providers.recorded.wait_for("push", 1)
    message = pushes[0]["message"]
    assert (message.get("token") or message.get("fid")) == "token-carol"
    assert message["android"]["priority"] == "high"
    assert message["android"]["collapse_key"] == alert["id"]
    assert message["apns"]["headers"]["apns-priority"] == "10"
    assert message["apns"]["payload"]["aps"]["interruption-level"] == "time-sensitive"
    by_push = await raiser.inbox.next("sos:delivery")
    assert (by_push["contact_id"], by_push["channel"], by_push["status"]) == (
        carol_contact["id"],
        "push",
        "reached",
    )
    details = await _details(api, alice, alert["id"])
    # Fallbacks due together are owed in one transaction: bob's would be here by now.
    assert [(d["channel"], d["user_id"]) for d in details["deliveries"]] == [("push", carol.id)]
    recipients = {r["user_id"]: r for r in details["recipients"]}
    assert recipients[bob.id]["reached"]["channel"] == "socket"
    assert recipients[carol.id]["reached"]["channel"] == "push"
    assert recipients[bob.id]["contact_id"] == bob_contact["id"]
    assert all(r["acknowledged_at"] is None for r in recipients.values())
    assert len(providers.recorded.push) == 1


async def test_a_contact_with_no_push_gets_an_sms_and_the_raiser_sees_each_step(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await make_server(_receipt_settings(base_settings(db), providers, tmp_path))
    api = server.api
    alice = await api.register(display_name="Alice")
    carol = await api.register(phone="+4915112345678")  # no device: no push can go out
    dan = await api.register()  # no device, no phone: nothing can reach him
    await _contact(api, alice, user_id=carol.id, name="Carol")
    await _contact(api, alice, user_id=dan.id, name="Dan")
    raiser = await _connected(sockets, server.url, alice)
    alert = await _raise(raiser)
    sms = await providers.recorded.wait_for("sms", 1)
    assert sms[0]["To"] == "+4915112345678" and "Alice" in sms[0]["Body"]
    steps = [await raiser.inbox.next("sos:delivery") for _ in range(2)]
    assert sorted((s["user_id"], s["channel"], s["status"]) for s in steps) == sorted(
        [(carol.id, "sms", "reached"), (dan.id, "push", "failed")]
    )
    details = await _details(api, alice, alert["id"])
    recipients = {r["user_id"]: r for r in details["recipients"]}
    assert recipients[carol.id]["reached"]["channel"] == "sms"
    assert recipients[dan.id]["reached"] is None and "no devices" in recipients[dan.id]["failed"]


async def test_the_fallback_push_is_sent_by_another_node_when_the_raising_one_dies(
    cluster: Cluster,
    make_server: ServerFactory,
    redis_settings: Settings,
    providers: ProviderRecorder,
    http: aiohttp.ClientSession,
    sockets: SocketFactory,
    silent_phones: Callable[[], SilentPhone],
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    doomed = await cluster(**providers.env(), **providers.fcm_env(tmp_path))
    survivor = await make_server(_receipt_settings(redis_settings, providers, tmp_path))
    api = Api(doomed.url, http)
    alice, carol = await api.register(), await api.register()
    await _contact(api, alice, user_id=carol.id, name="Carol")
    await _device(api, carol, "token-carol")
    suspended = silent_phones()
    await suspended.connect(survivor.url, carol.access_token)
    raiser = await _connected(sockets, doomed.url, alice)
    raisers_tablet = await _connected(sockets, survivor.url, alice)
    alert = await _raise(raiser)
    doomed.kill()  # before its own 5 s window ends
    clock.advance(5.5)
    pushes = await providers.recorded.wait_for("push", 1)
    assert pushes[0]["message"]["android"]["collapse_key"] == alert["id"]
    reached = await raisers_tablet.inbox.next("sos:delivery")
    assert (reached["user_id"], reached["channel"]) == (carol.id, "push")
    details = await _details(survivor.api, alice, alert["id"])
    assert [r["reached"]["channel"] for r in details["recipients"]] == ["push"]


async def test_a_contact_offline_at_the_raise_hears_it_on_connect_and_lists_it(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await make_server(
        _receipt_settings(base_settings(db), providers, tmp_path, push=False)
    )
    api = server.api
    alice, carol = await api.register(display_name="Alice"), await api.register()
    await _contact(api, alice, user_id=carol.id, name="Carol")
    raiser = await _connected(sockets, server.url, alice)
    alert = await _raise(raiser)
    failed = await raiser.inbox.next("sos:delivery")  # push not configured, no phone
    assert (failed["user_id"], failed["channel"], failed["status"]) == (carol.id, "push", "failed")
    late = await _connected(sockets, server.url, carol)
    heard = await late.inbox.next("sos:alert")
    assert heard["alert"]["id"] == alert["id"] and heard["user"]["display_name"] == "Alice"
    reached = await raiser.inbox.next("sos:delivery")  # the socket acked it
    assert (reached["user_id"], reached["channel"], reached["status"]) == (
        carol.id,
        "socket",
        "reached",
    )
    for who, role in ((carol, "contact"), (alice, "raiser")):
        status, listed, _ = await api.call("GET", "/api/v1/sos", token=who.access_token)
        assert status == 200
        assert [(a["alert"]["id"], a["role"], a["user"]["id"]) for a in listed["alerts"]] == [
            (alert["id"], role, alice.id)
        ]
    assert (await late.call("sos:resolve", {"alert_id": alert["id"]}))["ok"]
    status, listed, _ = await api.call("GET", "/api/v1/sos", token=carol.access_token)
    assert status == 200 and listed["alerts"] == []
    status, listed, _ = await api.call(
        "GET", "/api/v1/sos?status=all&limit=500", token=carol.access_token
    )
    assert [a["alert"]["status"] for a in listed["alerts"]] == ["resolved"]
    status, answer, _ = await api.call("GET", "/api/v1/sos?status=maybe", token=carol.access_token)
    assert status == 400 and answer["error"]["code"] == "invalid"
    # A socket connecting after the alert closed hears nothing of it.
    again = await _connected(sockets, server.url, carol)
    await again.call("chat:sync", {"rooms": {}})  # a round trip after connect's own emits
    assert again.inbox.count("sos:alert") == 0


async def test_escalation_pushes_to_a_user_contact_with_no_phone(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    server = await make_server(_receipt_settings(base_settings(db), providers, tmp_path))
    api = server.api
    alice, carol = await api.register(), await api.register()
    await _contact(api, alice, user_id=carol.id, name="Carol")
    await _device(api, carol, "token-carol")
    raiser = await _connected(sockets, server.url, alice)
    carols = await _connected(sockets, server.url, carol)
    alert = await _raise(raiser)
    await raiser.inbox.next("sos:delivery")  # reached by socket: no push at the raise
    clock.advance(61)
    assert await carols.inbox.next("sos:escalated") == {"alert_id": alert["id"], "level": 1}
    pushes = await providers.recorded.wait_for("push", 1)
    assert pushes[0]["message"]["android"]["collapse_key"] == alert["id"]
    assert pushes[0]["message"]["data"]["stage"] == "escalation"
    assert providers.recorded.sms == []


async def test_twilio_status_callbacks_are_signed_and_move_the_delivery(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await make_server(
        _receipt_settings(base_settings(db), providers, tmp_path, push=False)
    )
    api = server.api
    alice = await api.register()
    await _contact(api, alice, phone=PHONE_DORA, name="Dora")
    raiser = await _connected(sockets, server.url, alice)
    alert = await _raise(raiser)
    assert (await raiser.inbox.next("sos:delivery"))["status"] == "reached"
    conn = await asyncpg.connect(db)
    try:
        ref = await conn.fetchval("SELECT provider_ref FROM deliveries WHERE channel = 'sms'")
        assert ref and ref.startswith("SM")
        url = server.url + "/api/v1/webhooks/twilio"
        form = {"MessageSid": ref, "MessageStatus": "undelivered", "ErrorCode": "30003"}
        for signature in ("", "forged"):
            status, answer, _ = await api.call(
                "POST", "/api/v1/webhooks/twilio", data=_form(form), headers=_signed(signature)
            )
            assert status == 403 and answer["error"]["code"] == "forbidden", answer
        assert await conn.fetchval("SELECT status FROM deliveries") == "sent"
        good = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
        status, _, _ = await api.call(
            "POST", "/api/v1/webhooks/twilio", data=_form(form), headers=_signed(good)
        )
        assert status == 204
        assert await conn.fetchval("SELECT status FROM deliveries") == "failed"
    finally:
        await conn.close()
    failed = await raiser.inbox.next("sos:delivery")
    assert (failed["channel"], failed["status"]) == ("sms", "failed")
    details = await _details(api, alice, alert["id"])
    assert details["recipients"][0]["reached"] is None
    assert "undelivered" in details["recipients"][0]["failed"]


def _form(fields: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(fields)


def _signed(signature: str) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }


async def test_a_member_whose_sockets_are_all_in_the_background_is_owed_the_chat_push(
    server: Running, sockets: SocketFactory, db: str
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    sender = await _connected(sockets, server.url, alice)
    assert (await sender.call("chat:join", {"room_id": room["id"]}))["ok"]
    backgrounded = await _connected(sockets, server.url, bob)
    assert await backgrounded.call("client:state", {"foreground": False}) == {"ok": True}
    first = await send(sender, room["id"], "are you ok?")
    assert await backgrounded.call("client:state", {"foreground": True}) == {"ok": True}
    await send(sender, room["id"], "you are back")
    bad = await backgrounded.call("client:state", {"foreground": "no"})
    assert bad["ok"] is False and bad["error"]["code"] == "invalid"
    conn = await asyncpg.connect(db)
    try:
        # Owed pushes commit with their message, before its ack.
        rows = await conn.fetch("SELECT user_id::text AS user_id, source_id FROM deliveries")
    finally:
        await conn.close()
    assert [(r["user_id"], r["source_id"]) for r in rows] == [(bob.id, first["id"])]


async def test_the_official_js_client_acks_sos_alert_with_its_callback(
    make_server: ServerFactory,
    db: str,
    providers: ProviderRecorder,
    sockets: SocketFactory,
    tmp_path: Path,
) -> None:
    server = await make_server(_receipt_settings(base_settings(db), providers, tmp_path))
    api = server.api
    alice, bob = await api.register(), await api.register()
    await _contact(api, alice, user_id=bob.id, name="Bob")
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(JS / "sos_ack.mjs"),
        server.url,
        bob.access_token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await contract.ensure(server.url)
        # The sos:alert the official client saw is held to the AsyncAPI document too.
        assert await contract.read_step(process) == {"step": "connected"}
        raiser = await _connected(sockets, server.url, alice)
        alert = await _raise(raiser)
        line = await contract.read_step(process)
        assert line == {"step": "alert", "id": alert["id"], "acked": True}
        reached = await raiser.inbox.next("sos:delivery")
        assert (reached["user_id"], reached["channel"]) == (bob.id, "socket")
    finally:
        process.kill()
        await process.wait()
