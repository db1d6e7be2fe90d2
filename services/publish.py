"""The server API's publish: another service's event to a channel, unchanged."""

from __future__ import annotations

from typing import Any

from services.errors import Invalid
from services.ports import Fanout
from services.wire.rest import RESERVED_EVENTS

__all__ = ["PublishService"]

_RESERVED = frozenset(RESERVED_EVENTS)
_KINDS = ("user", "room", "project")


class PublishService:
    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout

    async def publish(self, channel: str, event: str, data: Any) -> None:
        kind, sep, ident = channel.partition(":")
        if not sep or kind not in _KINDS or not ident or len(ident) > 64:
            raise Invalid('channel must be "user:<id>", "room:<id>" or "project:<id>"')
        if event in _RESERVED:
            raise Invalid(f"event name {event!r} is reserved by Socket.IO")
        await self._fanout.to_channel(channel, event, data)
