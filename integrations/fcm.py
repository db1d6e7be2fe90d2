"""Push through Firebase Cloud Messaging with firebase-admin's async API.

Each delivery goes to every registered device of its user; tokens FCM reports
unregistered are removed. ``base_url`` points the SDK at another endpoint (the
tests' recorder): firebase-admin has no option for it, so the messaging
service's ``_fcm_url`` is set, checked at start and covered by the FCM tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import firebase_admin
import google.auth.transport.requests
import orjson
from firebase_admin import credentials, exceptions, messaging

from services.channels import DeliveryOutcome, Person, by_user
from storage.deliveries import Delivery

__all__ = ["FcmPush", "UrgentPush"]

log = logging.getLogger(__name__)

_apps = itertools.count()
# Answers that say the token will never work again: drop it.
_DEAD_TOKEN = (messaging.UnregisteredError, exceptions.InvalidArgumentError)
_TRANSIENT = (
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
    exceptions.ResourceExhaustedError,
    messaging.QuotaExceededError,
)


def _data(values: dict[str, Any]) -> dict[str, str]:
    """FCM data values are strings."""
    return {
        k: v if isinstance(v, str) else orjson.dumps(v).decode()
        for k, v in values.items()
        if v is not None
    }


@dataclass(frozen=True, slots=True)
class UrgentPush:
    """How an SOS push wakes a phone: the highest priority each platform allows.

    Android: priority high, its own notification channel and sound. iOS:
    ``apns-priority: 10`` and ``time-sensitive`` (a critical alert, which rings
    through silent mode, needs Apple's entitlement: off unless configured).
    Pushes of one alert collapse, so escalations replace rather than pile up,
    and none outlives the alert.
    """

    android_channel_id: str = "sos_alerts"
    critical: bool = False
    ttl_s: float = 24 * 3600.0

    def options(self, delivery: Delivery) -> dict[str, Any]:
        collapse = str(delivery.data.get("alert_id") or delivery.source_id)[:64]
        ttl = int(self.ttl_s)
        sound: str | messaging.CriticalSound = (
            messaging.CriticalSound("default", critical=True, volume=1.0)
            if self.critical
            else "default"
        )
        return {
            "android": messaging.AndroidConfig(
                priority="high",
                ttl=ttl,
                collapse_key=collapse,
                notification=messaging.AndroidNotification(
                    channel_id=self.android_channel_id, sound="default", priority="max"
                ),
            ),
            "apns": messaging.APNSConfig(
                headers={
                    "apns-priority": "10",
                    "apns-push-type": "alert",
                    "apns-collapse-id": collapse,
                    "apns-expiration": str(int(time.time()) + ttl),
                },
                payload=messaging.APNSPayload(
                    aps=messaging.Aps(
                        sound=sound,
                        custom_data={
                            "interruption-level": "critical" if self.critical else "time-sensitive"
                        },
                    )
                ),
            ),
        }


class FcmPush:
    name = "push"

    def address(self, person: Person) -> str | None:
        return by_user(person)

    def __init__(
        self,
        *,
        credentials_file: str,
        tokens: Callable[[str], Awaitable[list[tuple[str, str]]]],
        forget: Callable[[list[str]], Awaitable[None]],
        project_id: str | None = None,
        base_url: str | None = None,
        urgent: UrgentPush | None = None,
    ) -> None:
        self._urgent = urgent or UrgentPush()
        options = {"projectId": project_id} if project_id else None
        self._app = firebase_admin.initialize_app(
            credentials.Certificate(credentials_file), options, name=f"lifeline-{next(_apps)}"
        )
        self._tokens = tokens
        self._forget = forget
        if base_url:
            service = messaging._get_messaging_service(self._app)
            if not hasattr(service, "_fcm_url"):
                raise RuntimeError("this firebase-admin has no _fcm_url; cannot use a base URL")
            service._fcm_url = (
                f"{base_url.rstrip('/')}/v1/projects/{service._project_id}/messages:send"
            )

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        if delivery.user_id is None:
            return DeliveryOutcome("failed", "no user")
        devices = await self._tokens(delivery.user_id)
        if not devices:
            return DeliveryOutcome("skipped", "no devices")
        messages = [
            messaging.Message(
                fid=token,  # firebase-admin 7.6+ names the registration token `fid`
                notification=messaging.Notification(title=delivery.title, body=delivery.body),
                data=_data({"kind": delivery.kind, **delivery.data}),
                **(self._urgent.options(delivery) if delivery.kind == "sos" else {}),
            )
            for token, _platform in devices
        ]
        await self._fresh_credential()
        batch = await messaging.send_each_async(messages, app=self._app)
        dead = [
            token
            for (token, _), response in zip(devices, batch.responses, strict=True)
            if not response.success and isinstance(response.exception, _DEAD_TOKEN)
        ]
        if dead:
            await self._forget(dead)
        if batch.success_count:
            return DeliveryOutcome("sent", f"{batch.success_count} of {len(devices)} devices")
        if len(dead) == len(devices):
            return DeliveryOutcome("failed", "every device token is unregistered or invalid")
        errors = [r.exception for r in batch.responses if r.exception is not None]
        detail = "; ".join(sorted({type(e).__name__ for e in errors}))
        if any(isinstance(e, _TRANSIENT) for e in errors):
            return DeliveryOutcome("retry", detail)
        return DeliveryOutcome("failed", detail)

    async def _fresh_credential(self) -> None:
        """Refresh the OAuth token in a thread: the SDK would do it with blocking
        ``requests`` inside the event loop, stalling every socket of the node."""
        credential = self._app.credential.get_credential()
        if not credential.valid:
            await asyncio.to_thread(credential.refresh, google.auth.transport.requests.Request())

    async def close(self) -> None:
        # delete_app closes the SDK's async HTTP client with asyncio.run(), which
        # needs a thread without a running loop.
        with contextlib.suppress(Exception):
            await asyncio.to_thread(firebase_admin.delete_app, self._app)
