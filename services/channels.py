"""The channels that reach people outside the app (push, SMS, email, ...), as a registry.

A channel is one class with one interface: its ``name`` (what deliveries,
preferences and ``notification.requested`` call it), ``address`` (where it
reaches a person, or None when it cannot), ``deliver`` (one owed message;
the outcome says sent, a transient ``retry`` or a permanent ``failed``) and
``close``. The composition root registers each channel once; nothing else
names them, and the database keeps the name without a list to check it
against. Adding a channel is one class and one ``register`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from storage.deliveries import Delivery

__all__ = [
    "IN_APP",
    "Channel",
    "ChannelRegistry",
    "DeliveryOutcome",
    "NotConfigured",
    "Person",
    "by_email",
    "by_phone",
    "by_user",
]

# Not a delivery channel: the notification event on the user's sockets.
IN_APP = "in_app"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    status: Literal["sent", "failed", "retry", "skipped"]
    detail: str = ""
    # The provider's id of what it accepted (a Twilio message SID), for its receipts.
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """Whom a notification is for, as far as channels need to know."""

    user_id: str
    email: str | None
    phone: str | None


def by_user(person: Person) -> str | None:
    return None  # reaches the user's registered devices, no address of its own


def by_phone(person: Person) -> str | None:
    return person.phone


def by_email(person: Person) -> str | None:
    return person.email


class Channel(Protocol):
    name: str

    def address(self, person: Person) -> str | None: ...

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome: ...

    async def close(self) -> None: ...


class NotConfigured:
    """A channel with no provider credentials: the server runs, and says so per message."""

    def __init__(self, name: str, address: Callable[[Person], str | None] = by_user) -> None:
        self.name = name
        self._address = address

    def address(self, person: Person) -> str | None:
        return self._address(person)

    async def deliver(self, delivery: Delivery) -> DeliveryOutcome:
        return DeliveryOutcome("skipped", "not configured")

    async def close(self) -> None:
        return None


class ChannelRegistry:
    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            self.register(channel)

    def register(self, channel: Channel) -> None:
        if channel.name == IN_APP or channel.name in self._channels:
            raise ValueError(f"a channel named {channel.name!r} is registered already")
        self._channels[channel.name] = channel

    def get(self, name: str) -> Channel | None:
        return self._channels.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Every channel a notification may ask for: in_app and the registered ones."""
        return (IN_APP, *self._channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
