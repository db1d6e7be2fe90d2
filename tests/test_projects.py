"""Projects as the dashboard reads them: the list with totals and goals, search by title,
and donations over time computed in SQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from server.settings import Settings
from tests.clients import Socket
from tests.conftest import FakeClock, Running, ServerFactory
from tests.test_events import post_events

SocketFactory = Callable[..., Socket]

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)


def _at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _event(type_: str, payload: dict[str, Any], at: datetime = NOW) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": _at(at),
        "payload": payload,
    }


def _project(project_id: str, title: str, goal: int | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"project_id": project_id, "title": title, "follower_ids": []}
    if goal is not None:
        payload["goal_minor"] = goal
    return _event("project.updated", payload)


def _donation(project_id: str, amount: int, at: datetime = NOW) -> dict[str, Any]:
    return _event(
        "donation.created",
        {
            "project_id": project_id,
            "amount_minor": amount,
            "currency": "EUR",
            "donor_display": "Ann",
        },
        at,
    )


async def test_projects_list_with_totals_goals_and_search(server: Running) -> None:
    await post_events(
        server.api,
        _project("p-water", "Clean water", goal=10_000),
        _project("p-books", "School books 100%"),
        _donation("p-water", 2_500),
        _donation("p-lone", 700),  # a project known only from a donation
    )
    status, answer, _ = await server.api.call("GET", "/api/v1/projects")
    assert status == 200
    by_id = {p["project_id"]: p for p in answer["projects"]}
    assert set(by_id) == {"p-water", "p-books", "p-lone"}
    assert by_id["p-water"] | {"updated_at": None} == {
        "project_id": "p-water",
        "title": "Clean water",
        "currency": "EUR",
        "total_minor": 2_500,
        "donors_count": 1,
        "goal_minor": 10_000,
        "updated_at": None,
    }
    assert by_id["p-lone"]["title"] is None and by_id["p-books"]["total_minor"] == 0
    # Search finds titles (and ids) containing the words, case-insensitively; % is literal.
    for query, found in (("WATER", {"p-water"}), ("100%", {"p-books"}), ("%", {"p-books"})):
        _, answer, _ = await server.api.call(
            "GET", f"/api/v1/projects?q={query.replace('%', '%25')}"
        )
        assert {p["project_id"] for p in answer["projects"]} == found, query
    _, answer, _ = await server.api.call("GET", "/api/v1/projects?q=lone")
    assert [p["project_id"] for p in answer["projects"]] == ["p-lone"]
    _, answer, _ = await server.api.call("GET", "/api/v1/projects?limit=2")
    assert len(answer["projects"]) == 2
    # The ticker carries the title and the goal; a later project.updated keeps the goal.
    await post_events(server.api, _project("p-water", "Clean water for all"))
    _, ticker, _ = await server.api.call("GET", "/api/v1/projects/p-water/ticker")
    assert ticker["title"] == "Clean water for all" and ticker["goal_minor"] == 10_000
    status, answer, _ = await server.api.call("GET", "/api/v1/projects?limit=0")
    assert status == 400 and answer["error"]["code"] == "invalid"


async def test_donations_over_time_per_hour_then_per_day(server: Running, clock: FakeClock) -> None:
    clock.freeze(NOW.timestamp())
    this_hour = NOW.replace(minute=0)
    await post_events(
        server.api,
        _donation("p-chart", 100, NOW - timedelta(minutes=5)),  # this hour
        _donation("p-chart", 200, NOW - timedelta(minutes=20)),  # this hour too
        _donation("p-chart", 400, this_hour - timedelta(hours=47)),  # the oldest hour bucket
        _donation("p-chart", 800, this_hour - timedelta(hours=47, minutes=1)),  # the day before
        _donation("p-chart", 1_600, NOW - timedelta(days=10)),
        _donation("p-other", 9_999, NOW - timedelta(minutes=1)),  # another project
    )
    status, series, _ = await server.api.call("GET", "/api/v1/projects/p-chart/series")
    assert status == 200 and series["currency"] == "EUR"
    hourly, daily = series["hourly"], series["daily"]
    assert len(hourly) == 48  # every hour present, zero when nothing came
    assert hourly[-1] == {"at": _at(this_hour), "amount_minor": 300, "donations": 2}
    assert hourly[0] == {
        "at": _at(this_hour - timedelta(hours=47)),
        "amount_minor": 400,
        "donations": 1,
    }
    assert sum(b["amount_minor"] for b in hourly) == 700
    assert all(b["amount_minor"] == 0 for b in hourly[1:-1])
    # Per day before the hourly window: the donation a minute before it, and 10 days back.
    assert sum(b["amount_minor"] for b in daily) == 2_400
    assert len(daily) >= 60 and daily == sorted(daily, key=lambda b: b["at"])
    ten_days = [b for b in daily if b["amount_minor"] == 1_600]
    assert len(ten_days) == 1 and ten_days[0]["at"].startswith(
        (NOW - timedelta(days=10)).strftime("%Y-%m-%d")
    )
    # A project never heard of: only zero buckets, no currency.
    _, empty, _ = await server.api.call("GET", "/api/v1/projects/nobody/series")
    assert empty["currency"] is None and not any(b["donations"] for b in empty["hourly"])


async def test_a_subscriber_always_gets_the_ticker_after_the_last_donation_on_any_node(
    make_server: ServerFactory, redis_settings: Settings, sockets: SocketFactory
) -> None:
    """Viewers reconnecting in herds read a cached ticker, but never one older than the
    last donation any node applied: a donation makes every node's copy stale."""
    one = await make_server(redis_settings)
    two = await make_server(replace(redis_settings, node_id="two-" + uuid.uuid4().hex[:6]))

    async def subscribe(server: Running) -> dict[str, Any]:
        viewer = sockets()
        await viewer.connect(server.url, namespace="/live")
        ack = await viewer.call("live:subscribe", {"project_id": "p-herd"}, namespace="/live")
        assert ack["ok"], ack
        await viewer.close()
        return dict(ack["ticker"])

    await post_events(one.api, _donation("p-herd", 100))
    for server in (one, two, one, two):  # each node reads it once, then serves its copy
        assert (await subscribe(server))["total_minor"] == 100
    watcher = sockets()
    await watcher.connect(one.url, namespace="/live")
    await watcher.call("live:subscribe", {"project_id": "p-herd"}, namespace="/live")
    await post_events(two.api, _donation("p-herd", 50))  # applied on the second node
    await watcher.inbox.next("donation")  # the news has reached the first node
    for server in (one, two):
        ticker = await subscribe(server)
        assert ticker["total_minor"] == 150 and len(ticker["recent"]) == 2


async def test_a_herd_of_viewers_missing_the_cache_together_waits_for_one_query(
    server: Running, db: str, sockets: SocketFactory
) -> None:
    """A reconnect storm is not a query storm: viewers of a project whose ticker is
    not cached, subscribing at once, share one read of PostgreSQL."""
    await post_events(server.api, _donation("p-storm", 300))
    viewers = [sockets() for _ in range(20)]
    for viewer in viewers:
        await viewer.connect(server.url, namespace="/live")
    locker = await asyncpg.connect(db)
    watcher = await asyncpg.connect(db)
    try:
        # Hold the donations table, so every ticker read waits where it can be counted.
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE donations IN ACCESS EXCLUSIVE MODE")
        calls = [
            asyncio.ensure_future(
                v.call("live:subscribe", {"project_id": "p-storm"}, namespace="/live")
            )
            for v in viewers
        ]

        async def reads_waiting() -> int:
            return int(
                await watcher.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                        WHERE wait_event_type = 'Lock' AND query LIKE '%LEFT JOIN LATERAL%'"""
                )
            )

        async with asyncio.timeout(10):
            while await reads_waiting() == 0:
                await asyncio.sleep(0.02)
        # Long enough for a second read to show, were the others making their own:
        # a pool of ten serves twenty viewers' reads within milliseconds.
        for _ in range(25):
            assert await reads_waiting() == 1
            await asyncio.sleep(0.02)
        await transaction.rollback()
        acks = await asyncio.gather(*calls)
    finally:
        await locker.close()
        await watcher.close()
    assert all(a["ok"] and a["ticker"]["total_minor"] == 300 for a in acks), acks
