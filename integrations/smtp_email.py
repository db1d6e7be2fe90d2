"""Email through SMTP with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from services.channels import DeliveryOutcome, Person, by_email
from storage.deliveries import Delivery

__all__ = ["SmtpEmail"]


class SmtpEmail:
    name = "email"

    def address(self, person: Person) -> str | None:
        return by_email(person)

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username
        self._password = password
        self._start_tls = start_tls
        self._timeout_s = timeout_s

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        if not delivery.address:
            return DeliveryOutcome("failed", "no email address")
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = delivery.address
        message["Subject"] = delivery.title
        message["X-Lifeline-Kind"] = delivery.kind
        message.set_content(delivery.body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                start_tls=self._start_tls,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx: the server asks us to come back; 5xx: it never will take this one.
            if 400 <= exc.code < 500:
                return DeliveryOutcome("retry", f"smtp {exc.code}")
            return DeliveryOutcome("failed", f"smtp {exc.code}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return DeliveryOutcome("retry", f"smtp: {type(exc).__name__}")
        return DeliveryOutcome("sent", "accepted")

    async def close(self) -> None:
        return None
