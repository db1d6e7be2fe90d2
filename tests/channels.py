"""A notification channel of the tests' own: how a new channel plugs in (one class)."""

from __future__ import annotations

import asyncio

from services.channels import DeliveryOutcome, Person, by_user
from storage.deliveries import Delivery


class MessengerRecorder:
    """A chat-messenger channel (Telegram-like) that records what it was handed."""

    name = "messenger"

    def __init__(self) -> None:
        self.delivered: list[Delivery] = []
        self.arrived = asyncio.Event()

    def address(self, person: Person) -> str | None:
        return by_user(person)

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        self.delivered.append(delivery)
        self.arrived.set()
        return DeliveryOutcome("sent", "recorded")

    async def close(self) -> None:
        return None
