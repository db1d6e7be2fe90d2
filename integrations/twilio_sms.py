"""SMS through Twilio's REST API with twilio's own async client.

``base_url`` points the SDK at another endpoint (tests run a local recorder).
"""

from __future__ import annotations

import logging

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from services.channels import DeliveryOutcome, Person, by_phone
from storage.deliveries import Delivery

__all__ = ["TwilioSignature", "TwilioSms"]

log = logging.getLogger(__name__)


class TwilioSms:
    name = "sms"

    def address(self, person: Person) -> str | None:
        return by_phone(person)

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str | None = None,
        status_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._status_url = status_url
        self._http = AsyncTwilioHttpClient(pool_connections=False)
        # The SDK would pass a bare float timeout per request; a session timeout is aiohttp's way.
        self._http.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if base_url:
            self._client.api.base_url = base_url.rstrip("/")
        self._from = from_number

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        if not delivery.address:
            return DeliveryOutcome("failed", "no phone number")
        try:
            extra = {"status_callback": self._status_url} if self._status_url else {}
            message = await self._client.messages.create_async(
                to=delivery.address, from_=self._from, body=delivery.body, **extra
            )
        except TwilioRestException as exc:
            # 429 and 5xx are Twilio's to recover from; other 4xx will fail again.
            transient = exc.status == 429 or exc.status >= 500
            return DeliveryOutcome("retry" if transient else "failed", f"twilio {exc.status}")
        except (OSError, TimeoutError) as exc:
            return DeliveryOutcome("retry", f"network: {type(exc).__name__}")
        return DeliveryOutcome("sent", f"twilio {message.sid}", ref=message.sid)

    async def close(self) -> None:
        await self._http.close()


class TwilioSignature:
    """Checks ``X-Twilio-Signature`` of a status callback with the SDK's own validator."""

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def valid(self, url: str, params: dict[str, str], signature: str) -> bool:
        return bool(signature) and bool(self._validator.validate(url, params, signature))
