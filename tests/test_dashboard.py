"""The web dashboard in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright, expect

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
    settings = base_settings(db, kafka_bootstrap_servers=kafka.bootstrap)
    server = await make_server(settings.with_auth(admin_emails=("ops@lifeline.test",)))
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
    # The operator view's node figures carry this node's Kafka consumer lag.
    admin = await server.api.register(email="ops@lifeline.test")
    for _ in range(50):
        _, overview, _ = await server.api.call(
            "GET", "/api/v1/ops/overview", token=admin.access_token
        )
        if overview["nodes"] and overview["nodes"][0]["kafka_lag"] is not None:
            break
        await page.wait_for_timeout(200)  # nodes report their figures every second
    assert overview["nodes"][0]["kafka_lag"] == 0


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
    # Leaflet on the offline world outline (no tile server is configured).
    await expect(page.locator('#map[data-base="outline"]')).to_be_visible(timeout=10_000)
    assert await page.locator("path.world-land").count() >= 1
    marker = page.locator(f'path.sos-marker[data-alert-id="{alert_id}"]')
    await marker.wait_for(timeout=10_000)
    await expect(page.locator("#alerts")).to_contain_text("48.8500, 2.3500")
    before = await marker.bounding_box()
    await raiser.call("sos:location", {"alert_id": alert_id, "lat": 51.5, "lon": -0.12})
    await expect(page.locator("#alerts")).to_contain_text("51.5000, -0.1200")
    after = await marker.bounding_box()
    assert before is not None and after is not None
    assert after["y"] < before["y"] and after["x"] < before["x"]  # north and west: London
    # The trail runs from the raise point to the newest position.
    trail = page.locator("path.sos-trail")
    await expect(trail).to_have_count(1)
    assert (await trail.get_attribute("d") or "").count("L") >= 1
    await expect(page.locator("#nodes tr")).not_to_have_count(0)
    # Live charts of the nodes' figures, with the numbers beside them as text.
    await expect(page.locator("#events-chart canvas")).to_have_count(1)
    await expect(page.locator("#sockets-chart canvas")).to_have_count(1)
    await expect(page.locator("#nodes-summary")).to_contain_text("sockets")
    assert "no Kafka" in await page.inner_text("#nodes")
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


async def _donate(server: Running, project_id: str, amount: int, **extra: Any) -> None:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "donation.created",
        "occurred_at": extra.pop("at", None) or _now(),
        "payload": {
            "project_id": project_id,
            "amount_minor": amount,
            "currency": "EUR",
            "donor_display": extra.pop("donor", "Ann"),
        },
    }
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/events", json=body, headers={"X-Api-Key": API_KEY}
    )
    assert status == 202, answer


async def _announce(server: Running, project_id: str, title: str, goal: int) -> None:
    body = {
        "event_id": str(uuid.uuid4()),
        "type": "project.updated",
        "occurred_at": _now(),
        "payload": {
            "project_id": project_id,
            "title": title,
            "follower_ids": [],
            "goal_minor": goal,
        },
    }
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/events", json=body, headers={"X-Api-Key": API_KEY}
    )
    assert status == 202, answer


def _now(delta_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=delta_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# "Within a second" of the server API answering, as the dashboard promises.
LIVE_MS = 1_000


@pytest.mark.parametrize("mobile", [False, True])
async def test_the_start_page_lists_projects_that_move_live(
    server: Running, browser: Browser, mobile: bool
) -> None:
    await _announce(server, "p-water", "Clean water", 10_000)
    await _announce(server, "p-books", "School books", 4_000)
    await _donate(server, "p-water", 2_500)
    page, problems = await _page(browser, mobile=mobile)
    await page.goto(server.url + "/")
    # The first Tab reaches the skip link, for keyboard and screen-reader users.
    await page.keyboard.press("Tab")
    await expect(page.locator("a.skip")).to_be_focused()
    water = page.locator('li[data-project-id="p-water"]')
    await expect(page.locator("li.project")).to_have_count(2)
    await expect(water.locator(".total")).to_have_attribute("data-total-minor", "2500")
    await expect(water.locator("progress.goal")).to_have_attribute("data-value-minor", "2500")
    await expect(water.locator(".goal-label")).to_contain_text("25%")
    await expect(page.locator("#status")).to_have_text("live")
    # Searching by title narrows the list, without typing an id.
    await page.fill("#search", "book")
    await expect(page.locator("li.project")).to_have_count(1)
    await expect(page.locator('li[data-project-id="p-books"] a')).to_have_text("School books")
    await page.fill("#search", "")
    await expect(page.locator("li.project")).to_have_count(2)
    # A donation through the server API moves the total and the bar within a second.
    await _donate(server, "p-water", 5_000)
    await expect(water.locator(".total")).to_have_attribute(
        "data-total-minor", "7500", timeout=LIVE_MS
    )
    await expect(water.locator("progress.goal")).to_have_attribute(
        "data-value-minor", "7500", timeout=LIVE_MS
    )
    await expect(water.locator(".goal-label")).to_contain_text("75%")
    await _shot(page, "start-mobile" if mobile else "start")
    # Keyboard: from the search box, Tab reaches the first project (by title) and Enter
    # opens it.
    await page.focus("#search")
    await page.keyboard.press("Tab")
    await expect(page.locator('li[data-project-id="p-water"] a')).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(server.url + "/projects/p-water")
    await expect(page.locator("#title")).to_have_text("Clean water")
    assert problems == []


async def test_the_project_page_draws_the_goal_and_a_chart_that_moves(
    server: Running, browser: Browser
) -> None:
    await _announce(server, "p-chart", "Clean water", 20_000)
    await _donate(server, "p-chart", 1_000, at=_now(-3 * 3600))
    await _donate(server, "p-chart", 2_000, at=_now(-5 * 24 * 3600))  # a day bucket
    page, problems = await _page(browser)
    await page.goto(server.url + "/projects/p-chart")
    await expect(page.locator("#title")).to_have_text("Clean water")
    await expect(page.locator("#total")).to_have_attribute("data-total-minor", "3000")
    hourly = page.locator("#hourly-chart")
    await expect(hourly).to_have_attribute("data-bucket-total-minor", "1000")
    await expect(hourly.locator("canvas")).to_have_count(1)
    await expect(page.locator("#daily-chart")).to_have_attribute("data-bucket-total-minor", "2000")
    # Text alternatives: a summary and the numbers behind the chart.
    await expect(page.locator("#hourly-summary")).to_contain_text("1 donation,")
    assert await page.locator("#hourly-table tr").count() == 1
    await expect(page.locator("#goal")).to_have_attribute("data-value-minor", "3000")
    await _donate(server, "p-chart", 500)
    await expect(page.locator("#total")).to_have_attribute(
        "data-total-minor", "3500", timeout=LIVE_MS
    )
    await expect(page.locator("#goal")).to_have_attribute(
        "data-value-minor", "3500", timeout=LIVE_MS
    )
    await expect(hourly).to_have_attribute("data-last-bucket-minor", "500", timeout=LIVE_MS)
    await expect(hourly).to_have_attribute("data-bucket-total-minor", "1500")
    await _shot(page, "project-chart")
    assert problems == []


async def test_the_operator_map_uses_a_configured_tile_server_and_no_other(
    make_server: ServerFactory, db: str, browser: Browser
) -> None:
    tiles = "https://tiles.example.test/{z}/{x}/{y}.png"
    settings = base_settings(db, map_tiles_url=tiles, map_attribution="Example tiles")
    server = await make_server(settings.with_auth(admin_emails=("ops@lifeline.test",)))
    await server.api.register(email="ops@lifeline.test", password="operator-secret")
    page, problems = await _page(browser)
    served: list[str] = []

    async def tile(route: Route) -> None:
        served.append(route.request.url)
        await route.fulfill(body=_PNG, content_type="image/png")

    # The test's stand-in for the tile server: nothing leaves this machine.
    await page.route("https://tiles.example.test/**", tile)
    response = await page.goto(server.url + "/operator")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "img-src 'self' data: https://tiles.example.test;" in csp
    await page.fill("#email", "ops@lifeline.test")
    await page.fill("#password", "operator-secret")
    await page.click("button[type=submit]")
    await expect(page.locator('#map[data-base="tiles"]')).to_be_visible(timeout=10_000)
    await expect(page.locator("img.leaflet-tile-loaded").first).to_be_visible()
    assert served and all(u.startswith("https://tiles.example.test/") for u in served)
    await expect(page.locator(".leaflet-control-attribution")).to_contain_text("Example tiles")
    assert problems == []


# A 1x1 PNG for the stand-in tile server.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


async def test_after_the_demo_starts_the_start_page_shows_its_projects_moving(
    server: Running, browser: Browser
) -> None:
    """What a person sees on opening / while `python -m server.demo` runs: the demo's
    projects, their totals, goals and charts, moving, without typing anything."""
    feeder = asyncio.create_task(demo.main(server.url, API_KEY, seconds=60))
    try:
        for _ in range(100):  # the demo announces its projects and their history first
            _, listing, _ = await server.api.call("GET", "/api/v1/projects")
            if len(listing["projects"]) == 3 and all(p["total_minor"] for p in listing["projects"]):
                break
            await asyncio.sleep(0.1)
        page, problems = await _page(browser)
        await page.goto(server.url + "/")
        cards = page.locator("li.project")
        await expect(cards).to_have_count(3)
        for n in range(3):
            card = cards.nth(n)
            await expect(card.locator("progress.goal")).to_be_visible()
            await expect(card.locator("svg.spark rect")).to_have_count(48)
            spark = await card.locator("svg.spark").get_attribute("data-bucket-total-minor")
            assert spark is not None and int(spark) > 0
        # A live donation flashes its project and moves its total.
        await expect(page.locator("li.project.new")).not_to_have_count(0, timeout=15_000)
        await _shot(page, "start-after-demo")
        assert problems == []
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
