"""Local stand-ins for the providers outside our control, at the wire: they record what arrived.

Twilio's REST API (Messages.json) and Firebase Cloud Messaging (the OAuth token
endpoint and ``messages:send``) are served by one aiohttp app; SMTP by aiosmtpd.
The real SDKs talk to them, so tests assert on what a provider would receive.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.services import free_port

TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "twilio-test-token"
TWILIO_FROM = "+15005550006"
FCM_PROJECT = "lifeline-test"
FCM_ACCESS_TOKEN = "fcm-test-access-token"


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
        app.router.add_post("/token", self._google_token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._fcm_send)
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

    async def _google_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        return web.json_response(
            {"access_token": FCM_ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        )

    async def _fcm_send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {FCM_ACCESS_TOKEN}":
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401
            )
        body = await request.json()
        message = body.get("message", {})
        if (message.get("fid") or message.get("token")) in self.recorded.unregistered:
            return web.json_response(
                {
                    "error": {
                        "code": 404,
                        "message": "Requested entity was not found.",
                        "status": "NOT_FOUND",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": "UNREGISTERED",
                            }
                        ],
                    }
                },
                status=404,
            )
        status = self._fail("push")
        if status is not None:
            return web.json_response(
                {"error": {"code": status, "message": "try later", "status": "UNAVAILABLE"}},
                status=status,
            )
        self.recorded.push.append({"project": request.match_info["project"], **body})
        await self.recorded._notify()
        return web.json_response(
            {"name": f"projects/{request.match_info['project']}/messages/{uuid.uuid4().hex}"}
        )

    def service_account(self, path: Path) -> Path:
        """A service-account file whose token endpoint is this recorder."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": FCM_PROJECT,
                    "private_key_id": "test-key",
                    "private_key": pem,
                    "client_email": f"lifeline@{FCM_PROJECT}.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": self.url + "/token",
                }
            )
        )
        return path

    def fcm_env(self, tmp_path: Path) -> dict[str, str]:
        """The environment that points a node's Firebase SDK here too."""
        return {
            "LIFELINE_FCM_CREDENTIALS": str(self.service_account(tmp_path / "fcm.json")),
            "LIFELINE_FCM_BASE_URL": self.url,
        }

    def env(self) -> dict[str, str]:
        """The environment that points a node's SDKs here."""
        return {
            "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM,
            "LIFELINE_TWILIO_BASE_URL": self.url,
        }


class SmtpRecorder:
    """An SMTP server (aiosmtpd) that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        self._loop.call_soon_threadsafe(self._add, message)
        return "250 Message accepted for delivery"

    def _add(self, message: Message) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        async def enough() -> None:
            while len(self.messages) < count:
                self._arrived.clear()
                await self._arrived.wait()

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            raise AssertionError(f"{count} emails expected, {len(self.messages)} arrived") from None
        return self.messages
