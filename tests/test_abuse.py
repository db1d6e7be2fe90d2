"""Abuse: event floods, connection floods, fuzzed payloads and routes, the authorization
matrix, CORS. Each case fails on a server without the protection."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.settings import LimitSettings
from tests.clients import Account, Socket, make_room
from tests.conftest import Running, ServerFactory, base_settings
from tests.services import API_KEY, JWT_SECRET

pytestmark = pytest.mark.reliability

SocketFactory = Callable[..., Socket]


async def _refusal(url: str, token: str | None, namespace: str = "/") -> Any:
    socket = Socket()
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await socket.connect(url, token=token, namespace=namespace)
        return socket.connect_errors[0]
    finally:
        await socket.close()


async def test_an_event_flood_gets_rate_limited_then_cut_off(
    make_server: ServerFactory, sockets: SocketFactory
) -> None:
    server = await make_server(limits=LimitSettings(socket_events_per_s=0.5, socket_event_burst=5))
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    flooder = sockets()
    await flooder.connect(server.url, token=alice.access_token)
    neighbour = sockets()
    await neighbour.connect(server.url, token=bob.access_token)
    acks = [
        await flooder.call("chat:typing", {"room_id": room["id"], "typing": True}) for _ in range(8)
    ]
    assert [a["ok"] for a in acks] == [True] * 5 + [False] * 3
    assert acks[-1]["error"]["code"] == "rate_limited"
    # Persistent abuse: the socket is disconnected; its neighbour is not.
    for _ in range(120):
        if not flooder.sio.connected:
            break
        await flooder.emit("chat:typing", {"room_id": room["id"], "typing": True})
    await asyncio.wait_for(flooder.disconnected.wait(), 10)
    assert (await neighbour.call("chat:join", {"room_id": room["id"]}))["ok"]


async def test_connection_floods_are_refused_per_address_across_nodes(
    make_server: ServerFactory, redis_settings: Any, sockets: SocketFactory
) -> None:
    from dataclasses import replace

    limits = LimitSettings(connections_per_address=3)
    one = await make_server(replace(redis_settings, limits=limits))
    two = await make_server(replace(redis_settings, limits=limits, node_id="second"))
    account = await one.api.register()
    for url in (one.url, two.url, one.url):
        socket = sockets()
        await socket.connect(url, token=account.access_token)
    assert await _refusal(two.url, account.access_token) == {"message": "rate_limited"}
    assert await _refusal(one.url, None, namespace="/live") == {"message": "rate_limited"}


async def test_sockets_per_account_are_capped_across_nodes(
    make_server: ServerFactory, redis_settings: Any, sockets: SocketFactory
) -> None:
    from dataclasses import replace

    limits = LimitSettings(sockets_per_user=2)
    one = await make_server(replace(redis_settings, limits=limits))
    two = await make_server(replace(redis_settings, limits=limits, node_id="second"))
    account = await one.api.register()
    first = sockets()
    await first.connect(one.url, token=account.access_token)
    second = sockets()
    await second.connect(two.url, token=account.access_token)
    assert await _refusal(one.url, account.access_token) == {"message": "rate_limited"}
    await first.close()
    again = sockets()
    await again.connect(two.url, token=account.access_token)
    assert again.sio.connected


# -- fuzzing ------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
    | st.sampled_from(
        ["", "\x00", "\u202e", "😀" * 500, "a" * 5000, "00000000-0000-0000-0000-000000000000"]
    ),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    "room_id",
                    "text",
                    "client_msg_id",
                    "seq",
                    "typing",
                    "rooms",
                    "alert_id",
                    "lat",
                    "lon",
                    "accuracy_m",
                    "note",
                    "client_alert_id",
                    "ids",
                    "project_id",
                    "x",
                ]
            )
            | st.text(max_size=10),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)

EVENTS = [
    "chat:join",
    "chat:leave",
    "chat:send",
    "chat:typing",
    "chat:read",
    "chat:sync",
    "sos:raise",
    "sos:location",
    "sos:ack",
    "sos:resolve",
    "notification:read",
]


async def test_fuzzed_socket_events_never_break_the_server(
    make_server: ServerFactory, sockets: SocketFactory
) -> None:
    server = await make_server(
        limits=LimitSettings(
            socket_event_burst=100_000, socket_events_per_s=100_000, chat_send_per_window=100_000
        )
    )
    alice = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    live = sockets()
    await live.connect(server.url, namespace="/live")
    loop = asyncio.get_running_loop()
    seen: list[tuple[str, Any, Any]] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=st.sampled_from([*EVENTS, "live:subscribe", "live:unsubscribe"]), data=_json)
    def run(event: str, data: Any) -> None:
        namespace = "/live" if event.startswith("live:") else "/"
        client = live if namespace == "/live" else socket
        future = asyncio.run_coroutine_threadsafe(
            client.call(event, data, namespace=namespace), loop
        )
        seen.append((event, data, future))

    # Hypothesis drives a sync function; the calls run on this loop meanwhile.
    await asyncio.to_thread(run)
    for event, data, future in seen:
        ack = await asyncio.wrap_future(future)
        assert isinstance(ack, dict) and "ok" in ack, (event, data, ack)
        if not ack["ok"]:
            assert ack["error"]["code"] != "internal", (event, data, ack)
    assert socket.sio.connected and live.sio.connected
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert 'lifeline_errors_total{code="internal"' not in metrics
    # And a normal client is still served.
    bob = await server.api.register()
    room = await make_room(server.api, alice, [bob])
    assert (await socket.call("chat:join", {"room_id": room["id"]}))["ok"]


ROUTES = [
    ("POST", "/api/v1/auth/register", None),
    ("POST", "/api/v1/auth/login", None),
    ("POST", "/api/v1/auth/refresh", None),
    ("POST", "/api/v1/rooms", "user"),
    ("POST", "/api/v1/contacts", "user"),
    ("POST", "/api/v1/devices", "user"),
    ("PUT", "/api/v1/me/preferences", "user"),
    ("POST", "/api/v1/publish", "key"),
    ("POST", "/api/v1/notifications", "key"),
    ("POST", "/api/v1/events", "key"),
]


async def test_fuzzed_rest_bodies_never_get_a_500(server: Running) -> None:
    account = await server.api.register()
    loop = asyncio.get_running_loop()
    pending: list[tuple[str, Any, Any]] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(ROUTES), body=_json)
    def run(route: tuple[str, str, str | None], body: Any) -> None:
        method, path, auth = route
        headers = {"X-Api-Key": API_KEY} if auth == "key" else None
        token = account.access_token if auth == "user" else None
        call = server.api.call(method, path, json=body, token=token, headers=headers)
        pending.append((path, body, asyncio.run_coroutine_threadsafe(call, loop)))

    await asyncio.to_thread(run)
    for path, body, future in pending:
        status, answer, _ = await asyncio.wrap_future(future)
        assert status < 500, (path, body, answer)
        if status >= 400:
            assert set(answer["error"]) >= {"code", "message"}, (path, answer)
    status, _, _ = await server.api.call("GET", "/api/v1/me", token=account.access_token)
    assert status == 200


# -- authorization matrix -----------------------------------------------------------------


def _forged_tokens(account: Account) -> dict[str, str]:
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(jwt.api_jws.json.dumps(claims).encode()).rstrip(b"=")
    return {
        "refresh token": account.refresh_token,
        "alg none": f"{header}.{payload.decode()}.",
        "another key": jwt.encode(claims, "someone-elses-secret-" + "y" * 30, algorithm="HS256"),
        "expired": jwt.encode(
            {**claims, "exp": int(time.time()) - 5}, JWT_SECRET, algorithm="HS256"
        ),
        "garbage": "not.a.token",
    }


async def test_forged_and_wrong_tokens_are_unauthorized_everywhere(server: Running) -> None:
    account = await server.api.register()
    routes = [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/rooms"),
        ("POST", "/api/v1/rooms"),
        ("GET", f"/api/v1/rooms/{uuid.uuid4()}/messages"),
        ("GET", "/api/v1/contacts"),
        ("POST", "/api/v1/contacts"),
        ("GET", f"/api/v1/sos/{uuid.uuid4()}"),
        ("GET", "/api/v1/notifications"),
        ("POST", "/api/v1/devices"),
        ("GET", "/api/v1/me/preferences"),
        ("GET", "/api/v1/ops/overview"),
    ]
    for name, token in _forged_tokens(account).items():
        for method, path in routes:
            status, body, _ = await server.api.call(method, path, json={}, token=token)
            assert status == 401 and body["error"]["code"] == "unauthorized", (name, path)
        assert await _refusal(server.url, token) == {"message": "unauthorized"}, name
    # The server API refuses user tokens in place of the key.
    status, _, _ = await server.api.call(
        "POST", "/api/v1/events", json={}, token=account.access_token
    )
    assert status == 401


async def test_strangers_get_forbidden_and_learn_nothing(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, eve = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob])
    await server.api.call(
        "POST", "/api/v1/contacts", json={"user_id": bob.id, "name": "B"}, token=alice.access_token
    )
    raiser = sockets()
    await raiser.connect(server.url, token=alice.access_token)
    alert = (await raiser.call("sos:raise", {"client_alert_id": "s", "lat": 1, "lon": 1}))["alert"]
    stranger = sockets()
    await stranger.connect(server.url, token=eve.access_token)
    answers = [
        await stranger.call("chat:join", {"room_id": room["id"]}),
        await stranger.call(
            "chat:send", {"room_id": room["id"], "client_msg_id": "x", "text": "x"}
        ),
        await stranger.call("chat:typing", {"room_id": room["id"], "typing": True}),
        await stranger.call("chat:read", {"room_id": room["id"], "seq": 0}),
        await stranger.call("sos:location", {"alert_id": alert["id"], "lat": 0, "lon": 0}),
        await stranger.call("sos:ack", {"alert_id": alert["id"]}),
        await stranger.call("sos:resolve", {"alert_id": alert["id"]}),
    ]
    assert [a["error"]["code"] for a in answers] == ["forbidden"] * 7
    sync = await stranger.call("chat:sync", {"rooms": {room["id"]: 0}})
    assert sync == {"ok": True, "messages": {}, "more": [], "denied": [room["id"]]}
    for path in (
        f"/api/v1/rooms/{room['id']}",
        f"/api/v1/rooms/{room['id']}/messages",
        f"/api/v1/sos/{alert['id']}",
    ):
        status, body, _ = await server.api.call("GET", path, token=eve.access_token)
        assert status == 403 and set(body) == {"error"}, path
    assert stranger.inbox.count("sos:alert") == 0


# -- CORS ---------------------------------------------------------------------------------


async def test_cors_is_closed_by_default_and_opens_to_configured_origins(
    make_server: ServerFactory, db: str
) -> None:
    closed = await make_server()
    status, body, _ = await closed.api.call(
        "GET", "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"}
    )
    # Node's engine.io answer to a request it may not serve.
    assert status == 403 and body == {"code": 4, "message": "Forbidden"}
    # A WebSocket from another site's page is refused before the upgrade.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await closed.api.http.ws_connect(
            closed.url + "/socket.io/?EIO=4&transport=websocket",
            headers={"Origin": "https://evil.example"},
        )
    assert refused.value.status == 403
    status, _, _ = await closed.api.call("GET", "/socket.io/?EIO=4&transport=polling")
    assert status == 200  # native apps send no Origin
    opened = await make_server(base_settings(db, cors_origins=("https://app.example",)))
    status, _, headers = await opened.api.call(
        "GET", "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://app.example"}
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
