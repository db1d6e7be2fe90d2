"""Local stand-ins for the providers outside our control, at the wire: they record what arrived.

Twilio's REST API (Messages.json) and Firebase Cloud Messaging (the OAuth token
endpoint and ``messages:send``) are served by one aiohttp app; SMTP by aiosmtpd.
The real SDKs talk to them, so tests assert on what a provider would receive.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.services import free_port

TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-test-token"
TWILIO_FROM = "+15005550006"


@dataclass
class Recorded:
    sms: list[dict[str, str]] = field(default_factory=list)
    push: list[dict[str, Any]] = field(default_factory=list)
    # Status codes to answer next, per kind ("sms", "push"), before answering normally.
    failures: dict[str, list[int]] = field(default_factory=dict)
    # Push tokens FCM should report as unregistered.
    unregistered: set[str] = field(default_factory=set)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for(self, kind: str, count: int, timeout: float = 10.0) -> list[Any]:
        items: list[Any] = getattr(self, kind)

        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(items) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{count} {kind} expected, {len(items)} arrived: {items}"
            ) from None
        return items

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


class ProviderRecorder:
    def __init__(self) -> None:
        self.recorded = Recorded()
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio)
        self.server = TestServer(app, host="127.0.0.1", port=free_port())
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def _fail(self, kind: str) -> int | None:
        pending = self.recorded.failures.get(kind)
        return pending.pop(0) if pending else None

    async def _twilio(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != TWILIO_SID or request.headers.get("Authorization") is None:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        status = self._fail("sms")
        if status is not None:
            return web.json_response({"code": 20500, "message": "failure"}, status=status)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.recorded.sms.append(form)
        await self.recorded._notify()
        sid = "SM" + uuid.uuid4().hex
        return web.json_response(
            {
                "sid": sid,
                "status": "queued",
                "to": form.get("To"),
                "from": form.get("From"),
                "body": form.get("Body"),
                "account_sid": TWILIO_SID,
            },
            status=201,
        )

    def env(self) -> dict[str, str]:
        """The environment that points a node's SDKs here."""
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "LIFELINE_TWILIO_BASE_URL": self.url,
        }
