"""The web dashboard in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from server import demo
from tests.clients import Socket
from tests.conftest import ARTIFACTS, FakeClock, Running, ServerFactory, base_settings
from tests.services import API_KEY, KafkaBroker
from tests.test_kafka import envelope, produce

SocketFactory = Callable[..., Socket]


def _chromium() -> str:
    path = os.environ.get("LIFELINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(
            "Chromium is needed for the dashboard tests: apt-get install chromium "
            "(scripts/test does it), or set LIFELINE_CHROMIUM"
        )
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield chromium
        await chromium.close()


async def _page(browser: Browser, *, mobile: bool = False) -> tuple[Page, list[str]]:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844} if mobile else {"width": 1280, "height": 800}
    )
    page = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
    return page, problems


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


async def test_the_project_page_moves_when_a_donation_reaches_the_broker(
    make_server: ServerFactory, db: str, kafka: KafkaBroker, browser: Browser
) -> None:
    server = await make_server(base_settings(db, kafka_bootstrap_servers=kafka.bootstrap))
    page, problems = await _page(browser, mobile=True)
    response = await page.goto(server.url + "/projects/p-web")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # Waits go through locators: the page's CSP forbids the eval behind wait_for_function.
    await expect(page.locator("#status")).to_have_text("live")
    await expect(page.locator("#total")).to_have_attribute("data-total-minor", "0")
    await produce(
        kafka,
        "donations",
        envelope(
            "donation.created",
            {
                "project_id": "p-web",
                "amount_minor": 2500,
                "currency": "EUR",
                "donor_display": "Ann",
                "message": "For the well",
            },
        ),
        key="p-web",
    )
    await expect(page.locator("#total")).to_have_attribute(
        "data-total-minor", "2500", timeout=30_000
    )
    assert "25" in await page.inner_text("#total")
    assert await page.inner_text("#donors") == "1"
    recent = await page.inner_text("#recent")
    assert "Ann" in recent and "For the well" in recent
    await _shot(page, "project")
    # A reload (a reconnecting viewer) shows the current total at once.
    await page.reload()
    await expect(page.locator("#total")).to_have_attribute("data-total-minor", "2500")
    assert problems == []


async def test_the_operator_view_stays_signed_in_past_its_access_token(
    make_server: ServerFactory, db: str, browser: Browser, clock: FakeClock
) -> None:
    settings = base_settings(db)
    server = await make_server(settings.with_auth(admin_emails=("ops@lifeline.test",)))
    await server.api.register(email="ops@lifeline.test", password="operator-secret")
    page, problems = await _page(browser)
    await page.goto(server.url + "/operator")
    await page.fill("#email", "ops@lifeline.test")
    await page.fill("#password", "operator-secret")
    await page.click("button[type=submit]")
    await expect(page.locator("#nodes tr")).not_to_have_count(0)
    async with page.expect_response(
        lambda r: "/api/v1/auth/refresh" in r.url and r.status == 200, timeout=10_000
    ):
        clock.advance(901)  # the access token (15 min) has expired; the next poll refreshes
    async with page.expect_response(
        lambda r: "/api/v1/ops/overview" in r.url and r.status == 200, timeout=10_000
    ):
        pass
    await expect(page.locator("#login")).to_be_hidden()
    await expect(page.locator("#console")).to_be_visible()
    assert [p for p in problems if "401" not in p] == []  # the one expired poll is expected


async def test_the_operator_sees_sos_markers_move(
    make_server: ServerFactory, db: str, browser: Browser, sockets: SocketFactory
) -> None:
    settings = base_settings(db)
    server = await make_server(settings.with_auth(admin_emails=("ops@lifeline.test",)))
    admin = await server.api.register(email="ops@lifeline.test", password="operator-secret")
    assert admin.user["role"] == "admin"
    person = await server.api.register(display_name="Pat")
    helper = await server.api.register()
    await server.api.call(
        "POST",
        "/api/v1/contacts",
        json={"user_id": helper.id, "name": "H"},
        token=person.access_token,
    )
    raiser = sockets()
    await raiser.connect(server.url, token=person.access_token)
    helpers = sockets()
    await helpers.connect(server.url, token=helper.access_token)
    ack = await raiser.call(
        "sos:raise", {"client_alert_id": uuid.uuid4().hex, "lat": 48.85, "lon": 2.35}
    )
    alert_id = ack["alert"]["id"]

    page, problems = await _page(browser)
    await page.goto(server.url + "/operator")
    await _shot(page, "operator-login")
    await page.fill("#email", "ops@lifeline.test")
    await page.fill("#password", "operator-secret")
    await page.click("button[type=submit]")
    marker = page.locator(f'circle[data-alert-id="{alert_id}"]')
    await marker.wait_for(timeout=10_000)
    assert await marker.get_attribute("cx") == "2.35"
    assert await marker.get_attribute("cy") == "-48.85"
    await raiser.call("sos:location", {"alert_id": alert_id, "lat": 51.5, "lon": -0.12})
    await expect(marker).to_have_attribute("cx", "-0.12")
    await expect(page.locator("#nodes tr")).not_to_have_count(0)
    assert "test-" in await page.inner_text("#nodes")  # base_settings names nodes test-...
    assert "Pat" in await page.inner_text("#alerts")
    # Each contact's receipt state, live: the helper's socket acked, then they acknowledge.
    await expect(page.locator("#alerts")).to_contain_text("H: reached by socket")
    assert (await helpers.call("sos:ack", {"alert_id": alert_id}))["ok"]
    await expect(page.locator("#alerts")).to_contain_text("H: reached by socket, acknowledged")
    await _shot(page, "operator")
    # Someone who is not an operator is told so, and sees nothing.
    other, _ = await _page(browser)
    await other.goto(server.url + "/operator")
    await other.fill("#email", person.user["email"])
    await other.fill("#password", person.password)
    await other.click("button[type=submit]")
    await expect(other.locator("#login-error")).to_contain_text("operators")
    status, _, _ = await server.api.call("GET", "/api/v1/ops/overview", token=person.access_token)
    assert status == 403
    assert problems == []


async def test_pages_carry_security_headers_and_no_inline_script(
    make_server: ServerFactory, db: str
) -> None:
    server = await make_server()
    for path in ("/", "/projects/x", "/operator", "/static/project.js", "/healthz"):
        status, body, headers = await server.api.call("GET", path)
        assert status == 200, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        if path in ("/", "/projects/x", "/operator"):
            assert "<script>" not in body and " on" not in body.split("<body>")[1].split(">")[0]
    status, script, headers = await server.api.call("GET", "/static/vendor/socket.io.min.js")
    assert status == 200 and "io" in script


async def test_the_demo_feeds_a_running_server_through_public_apis(server: Running) -> None:
    await demo.main(server.url, API_KEY, seconds=4)
    status, ticker, _ = await server.api.call("GET", f"/api/v1/projects/{demo.PROJECT}/ticker")
    assert status == 200 and ticker["total_minor"] > 0 and ticker["recent"]
    login = {"email": "rita@demo.lifeline.test", "password": demo.PASSWORD}
    status, rita, _ = await server.api.call("POST", "/api/v1/auth/login", json=login)
    assert status == 200
    _, rooms, _ = await server.api.call("GET", "/api/v1/rooms", token=rita["access_token"])
    assert rooms["rooms"] and rooms["rooms"][0]["last_seq"] >= 1
