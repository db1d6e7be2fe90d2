"""Locust scenarios of realistic mixed traffic against any running deployment.

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \\
        --headless -u 200 -r 20 -t 5m --csv loadtests/out/run --html loadtests/out/run.html

User classes (weights pick the mix; ``--class-picker`` or naming classes on the
command line runs some only):

- ``Chatter``: a person with a direct room to a friend; sends messages over
  Socket.IO (``chat:send`` ack time is reported as request type ``sio``), types,
  marks read, pages history over REST.
- ``SosRaiser``: raises an alert, streams a location every second; its contact,
  connected on another socket, acknowledges; then it resolves.
- ``DonationViewer``: watches a project's ticker on ``/live`` and sometimes
  reloads it over REST.
- ``DonationSource``: another service posting ``donation.created`` events
  (needs ``LIFELINE_API_KEY`` in the environment; the development key otherwise).
- ``AccountHolder``: signs in, reads /me, rotates its refresh token.

Socket.IO clients are python-socketio's own (websocket transport only, as the
README asks of clients of a cluster behind a load balancer).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

import socketio
from locust import HttpUser, between, events, task

API_KEY = os.environ.get("LIFELINE_API_KEY", "dev-api-key-change-me")
PROJECT = os.environ.get("LOAD_PROJECT", "load-project")


class _Sockets:
    """What the socket users share: connecting, and reporting an ack's time to Locust."""

    host: str

    def _register(self, client: Any, name: str) -> dict[str, Any]:
        body = {
            "email": f"load-{uuid.uuid4().hex[:12]}@example.org",
            "password": "load test password",
            "display_name": name,
        }
        answer: dict[str, Any] = client.post("/api/v1/auth/register", json=body).json()
        return answer

    def _socket(self, token: str | None = None, namespace: str = "/") -> socketio.Client:
        sio = socketio.Client(reconnection=True)
        sio.connect(
            self.host,
            auth={"token": token} if token else None,
            namespaces=[namespace],
            transports=["websocket"],
            wait_timeout=10,
        )
        return sio

    def _call(self, sio: socketio.Client, event: str, data: Any, namespace: str = "/") -> Any:
        started = time.perf_counter()
        exception: Exception | None = None
        ack: Any = None
        try:
            ack = sio.call(event, data, namespace=namespace, timeout=10)
            if not ack.get("ok"):
                exception = RuntimeError(ack.get("error", {}).get("code", "error"))
        except Exception as exc:  # a timeout or a dropped socket is a failed request
            exception = exc
        events.request.fire(
            request_type="sio",
            name=event,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )
        return ack


class Chatter(_Sockets, HttpUser):
    weight = 5
    wait_time = between(1, 5)

    def on_start(self) -> None:
        me = self._register(self.client, "Chatter")
        friend = self._register(self.client, "Friend")
        self.token = me["access_token"]
        room = self.client.post(
            "/api/v1/rooms",
            json={"kind": "direct", "member_ids": [friend["user"]["id"]]},
            headers={"Authorization": f"Bearer {self.token}"},
        ).json()["room"]
        self.room_id = room["id"]
        self.sio = self._socket(self.token)
        self._call(self.sio, "chat:join", {"room_id": self.room_id})
        self.last_seq = 0

    def on_stop(self) -> None:
        self.sio.disconnect()

    @task(6)
    def send(self) -> None:
        ack = self._call(
            self.sio,
            "chat:send",
            {"room_id": self.room_id, "client_msg_id": uuid.uuid4().hex, "text": "hello there"},
        )
        if ack and ack.get("ok"):
            self.last_seq = ack["message"]["seq"]

    @task(3)
    def typing(self) -> None:
        self._call(self.sio, "chat:typing", {"room_id": self.room_id, "typing": True})

    @task(1)
    def read(self) -> None:
        self._call(self.sio, "chat:read", {"room_id": self.room_id, "seq": self.last_seq})

    @task(1)
    def history(self) -> None:
        self.client.get(
            f"/api/v1/rooms/{self.room_id}/messages?limit=20",
            headers={"Authorization": f"Bearer {self.token}"},
            name="/api/v1/rooms/[id]/messages",
        )


class SosRaiser(_Sockets, HttpUser):
    weight = 1
    wait_time = between(5, 15)

    def on_start(self) -> None:
        me = self._register(self.client, "Raiser")
        responder = self._register(self.client, "Responder")
        self.client.post(
            "/api/v1/contacts",
            json={"user_id": responder["user"]["id"], "name": "Responder"},
            headers={"Authorization": f"Bearer {me['access_token']}"},
        )
        self.sio = self._socket(me["access_token"])
        self.responder = self._socket(responder["access_token"])

    def on_stop(self) -> None:
        self.sio.disconnect()
        self.responder.disconnect()

    @task
    def emergency(self) -> None:
        lat, lon = random.uniform(-60, 60), random.uniform(-170, 170)
        ack = self._call(
            self.sio, "sos:raise", {"client_alert_id": uuid.uuid4().hex, "lat": lat, "lon": lon}
        )
        if not ack or not ack.get("ok"):
            return
        alert_id = ack["alert"]["id"]
        for n in range(10):
            lat, lon = lat + random.uniform(-0.001, 0.001), lon + random.uniform(-0.001, 0.001)
            self._call(self.sio, "sos:location", {"alert_id": alert_id, "lat": lat, "lon": lon})
            if n == 3:
                self._call(self.responder, "sos:ack", {"alert_id": alert_id})
            time.sleep(1)
        self._call(self.sio, "sos:resolve", {"alert_id": alert_id})


class DonationViewer(_Sockets, HttpUser):
    weight = 4
    wait_time = between(5, 20)

    def on_start(self) -> None:
        self.sio = self._socket(namespace="/live")
        self._call(self.sio, "live:subscribe", {"project_id": PROJECT}, namespace="/live")

    def on_stop(self) -> None:
        self.sio.disconnect()

    @task
    def reload(self) -> None:
        self.client.get(f"/api/v1/projects/{PROJECT}/ticker", name="/api/v1/projects/[id]/ticker")


class DonationSource(HttpUser):
    weight = 1
    wait_time = between(0.5, 2)

    @task
    def donate(self) -> None:
        self.client.post(
            "/api/v1/events",
            json={
                "event_id": str(uuid.uuid4()),
                "type": "donation.created",
                "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "payload": {
                    "project_id": PROJECT,
                    "amount_minor": random.choice([500, 1000, 2500]),
                    "currency": "EUR",
                    "donor_display": "Load",
                },
            },
            headers={"X-Api-Key": API_KEY},
        )


class AccountHolder(HttpUser):
    weight = 1
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.email = f"load-{uuid.uuid4().hex[:12]}@example.org"
        self.password = "load test password"
        answer = self.client.post(
            "/api/v1/auth/register",
            json={"email": self.email, "password": self.password, "display_name": "Load"},
        ).json()
        self.access = answer["access_token"]
        self.refresh = answer["refresh_token"]

    @task(5)
    def me(self) -> None:
        self.client.get("/api/v1/me", headers={"Authorization": f"Bearer {self.access}"})

    @task(1)
    def rotate(self) -> None:
        answer = self.client.post("/api/v1/auth/refresh", json={"refresh_token": self.refresh})
        if answer.status_code == 200:
            body = answer.json()
            self.access, self.refresh = body["access_token"], body["refresh_token"]

    @task(1)
    def login(self) -> None:
        self.client.post(
            "/api/v1/auth/login", json={"email": self.email, "password": self.password}
        )
