"""Locust scenarios against a running node (REST side of the foundation).

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 \
        --headless -u 50 -r 10 -t 60s

Each simulated user registers once, then logs in, reads /me and rotates its
refresh token. Socket fan-out is measured by bench/, which holds thousands of
raw WebSocket clients in one process.
"""

from __future__ import annotations

import uuid

from locust import HttpUser, between, task


class AccountHolder(HttpUser):
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
