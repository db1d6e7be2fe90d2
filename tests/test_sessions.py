"""Sessions that follow a token's life on a live socket, codes by email, two-factor,
operators who block, and client addresses behind proxies."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyotp
import pytest
import socketio

from server.settings import ProviderSettings, Settings
from tests.clients import Account, Api, Socket, make_room, send
from tests.conftest import FakeClock, Running, ServerFactory, base_settings
from tests.contract import contract
from tests.providers import SmtpRecorder
from tests.services import API_KEY, KafkaBroker
from tests.test_js_client import JS, _node
from tests.test_kafka import envelope, produce

SocketFactory = Callable[..., Socket]


async def _connected(sockets: SocketFactory, url: str, account: Account | str) -> Socket:
    socket = sockets()
    token = account if isinstance(account, str) else account.access_token
    await socket.connect(url, token=token)
    return socket


async def _login(api: Api, account: Account, **extra: Any) -> tuple[int, Any]:
    status, body, _ = await api.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": account.user["email"], "password": account.password, **extra},
        headers={"User-Agent": "LifelineTest/1.0 (phone)"},
    )
    return status, body


def _with_smtp(settings: Settings, smtp: SmtpRecorder) -> Settings:
    return replace(
        settings,
        providers=ProviderSettings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_tls=False),
    )


def _code(message: Any) -> str:
    body = message.get_payload(decode=True).decode()
    found = re.search(r"\b(\d{6})\b", body)
    assert found, body
    return found[1]


# -- token life on a socket ------------------------------------------------------------------


async def test_a_socket_whose_token_expires_is_told_then_cut_and_hears_nothing_after(
    server: Running, sockets: SocketFactory, clock: FakeClock
) -> None:
    alice = await server.api.register()
    socket = await _connected(sockets, server.url, alice)
    clock.advance(900 - 60 + 0.5)  # access tokens live 15 minutes; the notice comes 60 s early
    expiring = await socket.inbox.next("auth:expiring")
    assert expiring["expires_at"].endswith("Z")
    assert socket.sio.connected
    clock.advance(60)
    assert await socket.inbox.next("auth:expired") == {}
    await asyncio.wait_for(socket.disconnected.wait(), 5)


async def test_events_sent_after_expiry_are_refused(
    server: Running, sockets: SocketFactory, clock: FakeClock
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket = await _connected(sockets, server.url, alice)
    clock.advance(901)
    try:
        ack = await socket.call(
            "chat:send", {"room_id": room["id"], "client_msg_id": "late", "text": "hi"}
        )
        assert ack["ok"] is False and ack["error"]["code"] == "unauthorized", ack
    except Exception:  # the expiry round cut it first: refused all the same
        assert not socket.sio.connected
    fresh = (await _login(server.api, bob))[1]["access_token"]
    status, history, _ = await server.api.call(
        "GET", f"/api/v1/rooms/{room['id']}/messages", token=fresh
    )
    assert status == 200 and history["messages"] == []


async def test_an_in_band_refresh_keeps_the_socket_and_its_rooms_without_a_gap(
    server: Running, sockets: SocketFactory, clock: FakeClock
) -> None:
    alice, bob, eve = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob])
    listener = await _connected(sockets, server.url, alice)
    assert (await listener.call("chat:join", {"room_id": room["id"]}))["ok"]
    speaker = await _connected(sockets, server.url, bob)
    assert (await speaker.call("chat:join", {"room_id": room["id"]}))["ok"]
    await send(speaker, room["id"], "one")
    clock.advance(841)
    await listener.inbox.next("auth:expiring")
    # The speaker's token is as old: it refreshes too, over REST then in band.
    for socket, account in ((listener, alice), (speaker, bob)):
        status, pair, _ = await server.api.call(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert status == 200, pair
        ack = await socket.call("auth:refresh", {"token": pair["access_token"]})
        assert ack["ok"] and ack["expires_at"].endswith("Z"), ack
    # Refusals change nothing: another user's token, garbage, no token.
    for bad in ({"token": eve.access_token}, {"token": "x.y.z"}, {}):
        ack = await listener.call("auth:refresh", bad)
        assert ack["ok"] is False and ack["error"]["code"] in ("unauthorized", "invalid"), ack
    await send(speaker, room["id"], "two")
    clock.advance(120)  # past the first token's expiry
    await send(speaker, room["id"], "three")
    texts = [(await listener.inbox.next("chat:message"))["message"]["text"] for _ in range(3)]
    assert texts == ["one", "two", "three"]
    assert listener.sio.connected and listener.inbox.count("auth:expired") == 0


# -- sessions --------------------------------------------------------------------------------


async def test_sessions_are_listed_and_ended_from_another_device_on_every_node(
    make_server: ServerFactory, redis_settings: Settings, sockets: SocketFactory
) -> None:
    one = await make_server(redis_settings)
    two = await make_server(replace(redis_settings, node_id="second"))
    alice = await one.api.register()
    status, phone_login = await _login(one.api, alice)
    status, tablet_login = await _login(one.api, alice)
    assert status == 200
    phone = await _connected(sockets, one.url, phone_login["access_token"])
    tablet = await _connected(sockets, two.url, tablet_login["access_token"])
    status, listed, _ = await one.api.call(
        "GET", "/api/v1/me/sessions", token=phone_login["access_token"]
    )
    assert status == 200 and len(listed["sessions"]) == 3  # the registration is a login too
    current = [s for s in listed["sessions"] if s["current"]]
    assert len(current) == 1 and current[0]["user_agent"] == "LifelineTest/1.0 (phone)"
    assert all(s["ip"] == "127.0.0.*" for s in listed["sessions"])
    assert all(s["created_at"].endswith("Z") and s["last_used_at"] for s in listed["sessions"])
    # The phone ends the tablet's session: its socket on the other node goes at once.
    others = [s["id"] for s in listed["sessions"] if not s["current"]]
    tablet_id = next(s for s in others if s != _family_of(listed, alice))
    status, _, _ = await one.api.call(
        "DELETE", f"/api/v1/me/sessions/{tablet_id}", token=phone_login["access_token"]
    )
    assert status == 204
    await asyncio.wait_for(tablet.disconnected.wait(), 5)
    status, _, _ = await two.api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": tablet_login["refresh_token"]}
    )
    assert status == 401
    status, answer, _ = await one.api.call(
        "DELETE", f"/api/v1/me/sessions/{tablet_id}", token=alice.access_token
    )
    assert status == 404 and answer["error"]["code"] == "not_found"
    # Every other session: the registration's goes, the phone's stays.
    status, _, _ = await one.api.call(
        "DELETE", "/api/v1/me/sessions", token=phone_login["access_token"]
    )
    assert status == 204
    status, _, _ = await one.api.call("GET", "/api/v1/me", token=alice.access_token)
    assert status == 401
    status, listed, _ = await two.api.call(
        "GET", "/api/v1/me/sessions", token=phone_login["access_token"]
    )
    assert [s["current"] for s in listed["sessions"]] == [True]
    assert phone.sio.connected


def _family_of(listed: dict[str, Any], account: Account) -> str:
    """The registration's session: the oldest one."""
    return str(min(listed["sessions"], key=lambda s: s["created_at"])["id"])


# -- codes by email --------------------------------------------------------------------------


async def test_a_reset_code_works_once_expires_and_dies_after_five_wrong_tries(
    make_server: ServerFactory,
    db: str,
    smtp: SmtpRecorder,
    sockets: SocketFactory,
    clock: FakeClock,
) -> None:
    server = await make_server(_with_smtp(base_settings(db), smtp))
    api = server.api
    alice = await api.register(password="old password")
    socket = await _connected(sockets, server.url, alice)

    async def forgot(email: str) -> None:
        status, _, _ = await api.call("POST", "/api/v1/auth/password/forgot", json={"email": email})
        assert status == 202

    async def reset(code: str, password: str = "new password") -> int:
        status, answer, _ = await api.call(
            "POST",
            "/api/v1/auth/password/reset",
            json={"email": alice.user["email"], "code": code, "password": password},
        )
        if status != 204:
            assert answer["error"]["code"] == "invalid", answer
        return status

    await forgot("nobody@example.org")  # the same answer, and no mail
    await forgot(alice.user["email"])
    first = _code((await smtp.wait_for(1))[0])
    assert smtp.messages[0]["To"] == alice.user["email"]
    wrong = "000000" if first != "000000" else "111111"
    assert [await reset(wrong) for _ in range(5)] == [400] * 5
    assert await reset(first) == 400  # five wrong tries spent it
    await forgot(alice.user["email"])
    second = _code((await smtp.wait_for(2))[1])
    clock.advance(601)
    assert await reset(second) == 400  # ten minutes: expired
    await forgot(alice.user["email"])
    third = _code((await smtp.wait_for(3))[2])
    assert await reset(third) == 204
    assert await reset(third) == 400  # once
    await asyncio.wait_for(socket.disconnected.wait(), 5)  # every session ended
    status, _, _ = await api.call("GET", "/api/v1/me", token=alice.access_token)
    assert status == 401
    assert (await _login(api, replace(alice, password="new password")))[0] == 200
    assert (await _login(api, alice))[0] == 401


async def test_an_email_is_verified_with_its_code(
    make_server: ServerFactory, db: str, smtp: SmtpRecorder
) -> None:
    server = await make_server(_with_smtp(base_settings(db), smtp))
    alice = await server.api.register()
    status, _, _ = await server.api.call(
        "POST", "/api/v1/auth/email/verify/request", token=alice.access_token
    )
    assert status == 202
    code = _code((await smtp.wait_for(1))[0])
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/auth/email/verify", json={"code": "12345x"}, token=alice.access_token
    )
    assert status == 400 and answer["error"]["code"] == "invalid"
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/auth/email/verify", json={"code": code}, token=alice.access_token
    )
    assert status == 200 and answer["user"]["email_verified"] is True
    status, me, _ = await server.api.call("GET", "/api/v1/me", token=alice.access_token)
    assert me["user"]["email_verified"] is True


# -- two-factor ------------------------------------------------------------------------------


async def test_totp_login_with_wrong_right_and_replayed_codes(
    server: Running, clock: FakeClock
) -> None:
    api = server.api
    alice = await api.register()
    status, setup, _ = await api.call("POST", "/api/v1/me/totp", token=alice.access_token)
    assert status == 201 and setup["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(setup["secret"])
    status, answer, _ = await api.call(
        "POST", "/api/v1/me/totp/confirm", json={"code": "000000"}, token=alice.access_token
    )
    assert status == 400 or totp.at(clock.now()) == "000000"
    status, _, _ = await api.call(
        "POST",
        "/api/v1/me/totp/confirm",
        json={"code": totp.at(clock.now())},
        token=alice.access_token,
    )
    assert status == 204
    status, answer = await _login(api, alice)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert answer["error"]["totp_required"] is True
    clock.advance(30)  # the confirming code is spent; the next step's is fresh
    code = totp.at(clock.now())
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    status, answer = await _login(api, alice, totp=wrong)
    assert status == 401 and answer["error"]["totp_required"] is True
    status, answer = await _login(api, alice, totp=code)
    assert status == 200, answer
    status, answer = await _login(api, alice, totp=code)  # replayed in its window
    assert status == 401
    clock.advance(30)
    status, _, _ = await api.call(
        "DELETE",
        "/api/v1/me/totp",
        json={"code": totp.at(clock.now())},
        token=alice.access_token,
    )
    assert status == 204
    assert (await _login(api, alice))[0] == 200


# -- operators and blocking ------------------------------------------------------------------


async def test_a_block_from_kafka_ends_sockets_on_both_nodes_and_refuses_them(
    make_server: ServerFactory,
    redis_settings: Settings,
    kafka: KafkaBroker,
    sockets: SocketFactory,
) -> None:
    one = await make_server(replace(redis_settings, kafka_bootstrap_servers=kafka.bootstrap))
    two = await make_server(replace(redis_settings, node_id="second"))
    alice = await one.api.register()
    on_one = await _connected(sockets, one.url, alice)
    on_two = await _connected(sockets, two.url, alice)
    await produce(kafka, "users", envelope("user.blocked", {"user_id": alice.id}), key=alice.id)
    for socket in (on_one, on_two):
        await asyncio.wait_for(socket.disconnected.wait(), 20)
    status, answer = await _login(one.api, alice)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, _, _ = await two.api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token}
    )
    assert status in (401, 403)
    refused = sockets()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(two.url, token=alice.access_token)
    assert refused.connect_errors == [{"message": "forbidden"}]
    await produce(kafka, "users", envelope("user.unblocked", {"user_id": alice.id}), key=alice.id)
    async with asyncio.timeout(20):
        while (await _login(two.api, alice))[0] != 200:
            await asyncio.sleep(0.1)


async def test_operators_list_block_and_change_roles_with_an_audit(
    make_server: ServerFactory, db: str, sockets: SocketFactory
) -> None:
    settings = base_settings(db).with_auth(admin_emails=("ops@lifeline.test",))
    server = await make_server(settings)
    api = server.api
    admin = await api.register(email="ops@lifeline.test")
    bob = await api.register(display_name="Bob Blocked")
    bobs = await _connected(sockets, server.url, bob)
    status, answer, _ = await api.call("GET", "/api/v1/admin/users", token=bob.access_token)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, found, _ = await api.call(
        "GET", "/api/v1/admin/users?q=blocked&limit=500", token=admin.access_token
    )
    assert status == 200 and [u["id"] for u in found["users"]] == [bob.id]
    status, answer, _ = await api.call(
        "PATCH",
        f"/api/v1/admin/users/{bob.id}",
        json={"blocked": True, "role": "doctor"},
        token=admin.access_token,
    )
    assert status == 200 and answer["user"]["blocked"] is True
    assert answer["user"]["role"] == "doctor"
    await asyncio.wait_for(bobs.disconnected.wait(), 5)
    status, answer, _ = await api.call("GET", "/api/v1/me", token=bob.access_token)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    for body in ({"blocked": "yes"}, {"role": "emperor"}):
        status, answer, _ = await api.call(
            "PATCH", f"/api/v1/admin/users/{bob.id}", json=body, token=admin.access_token
        )
        assert status == 400 and answer["error"]["code"] == "invalid"
    status, answer, _ = await api.call(
        "PATCH",
        "/api/v1/admin/users/00000000-0000-0000-0000-000000000000",
        json={"blocked": True},
        token=admin.access_token,
    )
    assert status == 404
    status, answer, _ = await api.call(
        "PATCH",
        f"/api/v1/admin/users/{bob.id}",
        json={"blocked": False},
        token=admin.access_token,
    )
    assert status == 200 and answer["user"]["blocked"] is False
    assert (await _login(api, bob))[0] == 200


# -- client addresses ------------------------------------------------------------------------


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    make_server: ServerFactory, db: str
) -> None:
    for trusted, expected in (((), "127.0.0.*"), (("127.0.0.1/32",), "203.0.113.*")):
        server = await make_server(
            base_settings(db).with_auth(trusted_proxies=trusted)  # type: ignore[arg-type]
        )
        account = await server.api.register()
        status, body, _ = await server.api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": account.user["email"], "password": account.password},
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        )
        assert status == 200
        status, listed, _ = await server.api.call(
            "GET", "/api/v1/me/sessions", token=body["access_token"]
        )
        current = next(s for s in listed["sessions"] if s["current"])
        assert current["ip"] == expected, (trusted, current)


async def test_the_official_js_client_refreshes_in_band_without_reconnecting(
    server: Running, clock: FakeClock
) -> None:
    alice = await server.api.register()
    process = await asyncio.create_subprocess_exec(
        _node(),
        str(JS / "refresh.mjs"),
        server.url,
        alice.access_token,
        alice.refresh_token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    await contract.ensure(server.url)

    async def line() -> dict[str, Any]:
        # What the client saw on the way (auth:expiring, the auth:refresh ack) is held
        # to the AsyncAPI document.
        return await contract.read_step(process)

    try:
        connected = await line()
        assert connected["step"] == "connected"
        clock.advance(841)
        assert await line() == {"step": "refreshed", "ok": True, "id": connected["id"]}
        clock.advance(120)  # past the first token's expiry: the socket lives on
        status, _, _ = await server.api.call(
            "POST",
            "/api/v1/publish",
            json={"channel": f"user:{alice.id}", "event": "greeting", "data": {"n": 1}},
            headers={"X-Api-Key": API_KEY},
        )
        assert status == 202
        assert await line() == {"step": "event", "data": {"n": 1}, "id": connected["id"]}
    finally:
        process.kill()
        await process.wait()
