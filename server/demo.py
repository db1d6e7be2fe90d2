"""Feed a running Lifeline a realistic stream through its public APIs, to watch the dashboard.

    python -m server.demo                       # http://127.0.0.1:8080, the development API key
    python -m server.demo --url http://host:8080 --api-key KEY --seconds 120

It registers a few people (or signs them in again), announces three projects with
titles and goals (``project.updated``), gives each two days of donation history,
then keeps sending ``donation.created`` events for them (POST /events), moves an
SOS alert along a path, and chats in a room. Open the printed URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
import socketio

from server.settings import DEV_API_KEY

PROJECT = "demo-water"
# (id, title, goal in minor units)
PROJECTS = [
    (PROJECT, "Clean water for Kisumu", 1_500_000),
    ("demo-books", "School books for Lviv", 600_000),
    ("demo-clinic", "A mobile clinic", 4_000_000),
]
HISTORY_S = 2 * 24 * 3600
PASSWORD = "demo-password-123"  # noqa: S105 - demo accounts on a dev server
DONORS = ["Amina", "Ben", "Chen", "Dora", "Emil", "Farah", "Goran", "Hana", "Anonymous"]
MESSAGES = ["On my way", "Thanks!", "Water arrived", "Can you call me?", "All good here"]


async def _account(http: aiohttp.ClientSession, url: str, name: str, role: str) -> dict[str, Any]:
    email = f"{name.lower()}@demo.lifeline.test"
    body = {"email": email, "password": PASSWORD, "display_name": name, "role": role}
    async with http.post(url + "/api/v1/auth/register", json=body) as response:
        if response.status == 201:
            return dict(await response.json())
    async with http.post(
        url + "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
    ) as response:
        response.raise_for_status()
        return dict(await response.json())


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _now() -> str:
    return _iso(datetime.now(UTC))


def _donation(project_id: str) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "amount_minor": random.choice([500, 1000, 2500, 5000, 10000]),
        "currency": "EUR",
        "donor_id": f"demo-{random.randint(1, 40)}",
        "donor_display": random.choice(DONORS),
        "message": random.choice([None, "Good luck!", "For the well", "From Berlin"]),
    }


async def donations(http: aiohttp.ClientSession, url: str, key: str, organizer: str) -> None:
    now = datetime.now(UTC).timestamp()
    for project_id, title, goal in PROJECTS:
        await _event(
            http,
            url,
            key,
            "project.updated",
            {
                "project_id": project_id,
                "organizer_id": organizer,
                "title": title,
                "follower_ids": [],
                "goal_minor": goal,
            },
        )
        # Two days of history, so the charts have a shape from the first look.
        history = [
            {
                "event_id": str(uuid.uuid4()),
                "type": "donation.created",
                "occurred_at": _iso(datetime.fromtimestamp(at, UTC)),
                "payload": _donation(project_id),
            }
            for at in sorted(now - random.uniform(60, HISTORY_S) for _ in range(80))
        ]
        async with http.post(
            url + "/api/v1/events", json={"events": history}, headers={"X-Api-Key": key}
        ) as response:
            if response.status != 202:
                raise SystemExit(f"POST /events answered {response.status}")
    while True:
        project_id = random.choice(PROJECTS)[0]
        await _event(http, url, key, "donation.created", _donation(project_id))
        await asyncio.sleep(random.uniform(0.5, 2.5))


async def _event(
    http: aiohttp.ClientSession, url: str, key: str, type_: str, payload: dict[str, Any]
) -> None:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "type": type_,
        "occurred_at": _now(),
        "payload": payload,
    }
    async with http.post(
        url + "/api/v1/events", json=envelope, headers={"X-Api-Key": key}
    ) as response:
        if response.status != 202:
            raise SystemExit(f"POST /events answered {response.status}: {await response.text()}")


async def sos_walk(url: str, token: str) -> None:
    sio = socketio.AsyncClient()
    await sio.connect(url, auth={"token": token}, transports=["websocket"])
    lat, lon = 52.52, 13.405
    try:
        while True:
            ack = await sio.call(
                "sos:raise",
                {"client_alert_id": uuid.uuid4().hex, "lat": lat, "lon": lon, "note": "demo"},
            )
            alert_id = ack["alert"]["id"]
            for _ in range(60):
                lat += random.uniform(-0.3, 0.3)
                lon += random.uniform(-0.3, 0.5)
                lat, lon = max(-80.0, min(80.0, lat)), ((lon + 180) % 360) - 180
                await sio.call("sos:location", {"alert_id": alert_id, "lat": lat, "lon": lon})
                await asyncio.sleep(1)
            await sio.call("sos:resolve", {"alert_id": alert_id})
    finally:
        await sio.disconnect()


async def chat(http: aiohttp.ClientSession, url: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    async with http.post(
        url + "/api/v1/rooms",
        json={"kind": "direct", "member_ids": [b["user"]["id"]]},
        headers={"Authorization": f"Bearer {a['access_token']}"},
    ) as response:
        room = (await response.json())["room"]
    clients = []
    for account in (a, b):
        sio = socketio.AsyncClient()
        await sio.connect(url, auth={"token": account["access_token"]}, transports=["websocket"])
        await sio.call("chat:join", {"room_id": room["id"]})
        clients.append(sio)
    try:
        for sio in itertools.cycle(clients):
            await sio.call(
                "chat:send",
                {
                    "room_id": room["id"],
                    "client_msg_id": uuid.uuid4().hex,
                    "text": random.choice(MESSAGES),
                },
            )
            await asyncio.sleep(random.uniform(1.0, 3.0))
    finally:
        for sio in clients:
            await sio.disconnect()


async def main(url: str, key: str, seconds: float | None) -> None:
    url = url.rstrip("/")
    async with aiohttp.ClientSession() as http:
        organizer = await _account(http, url, "Olga", "organizer")
        patient = await _account(http, url, "Pat", "patient")
        relative = await _account(http, url, "Rita", "relative")
        async with http.post(
            url + "/api/v1/contacts",
            json={"user_id": relative["user"]["id"], "name": "Rita"},
            headers={"Authorization": f"Bearer {patient['access_token']}"},
        ):
            pass  # 409 when the demo ran before: she is already a contact
        print(f"projects:      {url}/")
        print(f"project page:  {url}/projects/{PROJECT}")
        print(f"operator view: {url}/operator  (an account listed in LIFELINE_ADMIN_EMAILS)")
        tasks = [
            asyncio.create_task(donations(http, url, key, organizer["user"]["id"])),
            asyncio.create_task(sos_walk(url, patient["access_token"])),
            asyncio.create_task(chat(http, url, patient, relative)),
        ]
        try:
            done, _ = await asyncio.wait(
                tasks, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION
            )
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", default=DEV_API_KEY)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.url, args.api_key, args.seconds))


if __name__ == "__main__":
    cli()
