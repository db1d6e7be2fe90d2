"""Health, readiness, metrics and logs, as an operator sees them."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable

import aiohttp

from server.logs import JsonFormatter
from tests.clients import Socket
from tests.conftest import Running, ServerFactory
from tests.services import spawn_redis


async def test_healthz_and_readyz_single_node(server: Running) -> None:
    assert (await server.api.call("GET", "/healthz"))[0] == 200
    status, body, _ = await server.api.call("GET", "/readyz")
    assert status == 200 and body["checks"] == {"postgres": "ok"}


async def test_readyz_reports_a_redis_outage_and_recovery(
    make_server: ServerFactory, redis_prefix: str, http: aiohttp.ClientSession
) -> None:
    redis = spawn_redis()
    try:
        running = await make_server(redis_url=redis.url, redis_prefix=redis_prefix)
        status, body, _ = await running.api.call("GET", "/readyz")
        assert status == 200 and body["checks"]["redis"] == "ok"
        redis.stop()
        status, body, _ = await running.api.call("GET", "/readyz")
        assert status == 503 and body["checks"]["redis"] == "down"
        restarted = spawn_redis(redis.port)
        try:
            # The pub/sub listener re-subscribes by itself; readiness comes back.
            for _ in range(100):
                status, body, _ = await running.api.call("GET", "/readyz")
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            assert status == 200, body
        finally:
            restarted.stop()
    finally:
        redis.stop()


async def test_metrics_count_sockets_events_errors_and_requests(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    account = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    await server.api.call("GET", "/api/v1/me")  # 401
    status, text, headers = await server.api.call("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'lifeline_sockets_connected{namespace="/"} 1.0' in text
    assert 'lifeline_errors_total{code="unauthorized",door="http"} 1.0' in text
    assert 'route="/api/v1/auth/register"' in text and 'status="201"' in text


async def test_no_secret_reaches_a_log_line(
    server: Running, sockets: Callable[..., Socket]
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        account = await server.api.register(password="hunter2hunter2", phone="+4915123456789")
        await server.api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": account.user["email"], "password": "wrong password"},
        )
        await server.api.call("GET", "/api/v1/me", token=account.access_token)
        await server.api.call(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        await server.api.call(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        # A full SOS run with a phone-only contact (an SMS owed, skipped: not configured).
        helper = await server.api.register()
        _, fresh, _ = await server.api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": account.user["email"], "password": "hunter2hunter2"},
        )
        for contact in (
            {"phone": "+447911123456", "name": "Dora"},
            {"user_id": helper.id, "name": "H"},
        ):
            status, _, _ = await server.api.call(
                "POST", "/api/v1/contacts", json=contact, token=fresh["access_token"]
            )
            assert status == 201
        raiser = sockets()
        await raiser.connect(server.url, token=fresh["access_token"])
        ack = await raiser.call(
            "sos:raise", {"client_alert_id": "log", "lat": 47.123456, "lon": 8.654321}
        )
        await raiser.call("sos:location", {"alert_id": ack["alert"]["id"], "lat": 47.2, "lon": 8.7})
        assert (await raiser.call("sos:resolve", {"alert_id": ack["alert"]["id"]}))["ok"]
        await raiser.call("chat:send", {"room_id": "x" * 65})  # an invalid event, logged or not
        # Whatever code logs, the formatter scrubs it.
        logging.getLogger("anything").warning(
            "oops %s %s",
            account.access_token,
            "+4915123456789",
            extra={"password": "hunter2hunter2", "authorization": "Bearer x"},
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    text = stream.getvalue()
    assert "oops" in text
    for secret in (
        account.access_token,
        account.refresh_token,
        fresh["access_token"],
        "hunter2hunter2",
        "+4915123456789",
        "15123456789",
        "7911123456",
        "47.123456",
        "8.654321",
    ):
        assert secret not in text
