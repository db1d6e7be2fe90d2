"""Every Socket.IO event of Lifeline, with its payload and ack models.

Client events are entered by ``SocketDoor.on`` as it registers their handlers
(the same models parse the payload), server events are listed here once. The
AsyncAPI document (realtime/asyncapi.py) is built from this catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime import rooms
from services.wire.base import Reply, Request
from services.wire.sockets import (
    AlertActed,
    AlertDelivery,
    AlertEscalated,
    AlertExpired,
    AlertMoved,
    AlertRaised,
    ChatMessage,
    DonationEvent,
    Empty,
    Expiring,
    NotificationEvent,
    Presence,
    ReadEvent,
    RoomRemoved,
    TypingEvent,
)

__all__ = ["SERVER_EVENTS", "ClientEvent", "EventCatalog", "ServerEvent"]


@dataclass(frozen=True, slots=True)
class ClientEvent:
    namespace: str
    name: str
    payload: type[Request]
    ack: type[Reply]
    summary: str


@dataclass(frozen=True, slots=True)
class ServerEvent:
    namespace: str
    name: str
    payload: type[Reply]
    summary: str
    asks_ack: bool = False


_TO_ROOM = "to the sockets joined to the room"
_TO_ALERT = "to the raiser and every contact who is a user, on every socket"

SERVER_EVENTS: tuple[ServerEvent, ...] = (
    ServerEvent(
        rooms.MAIN,
        "chat:message",
        ChatMessage,
        f"A message or room event, {_TO_ROOM} (the sending socket excluded). Apply in seq "
        "order; a gap means chat:sync.",
    ),
    ServerEvent(rooms.MAIN, "chat:typing", TypingEvent, f"Typing, {_TO_ROOM}."),
    ServerEvent(rooms.MAIN, "chat:read", ReadEvent, f"A member's read marker, {_TO_ROOM}."),
    ServerEvent(
        rooms.MAIN,
        "presence",
        Presence,
        f"online when a user's socket joins (it may repeat), offline within 10 s after their "
        f"last socket in the room left, {_TO_ROOM}.",
    ),
    ServerEvent(
        rooms.MAIN,
        "room:removed",
        RoomRemoved,
        "To a member removed from a room (after their member_removed): their sockets have "
        "left it on every node.",
    ),
    ServerEvent(
        rooms.MAIN,
        "sos:alert",
        AlertRaised,
        "An alert, to every contact who is a user, on every socket, with an ack request: "
        "call the ack callback on receipt (any value). Sent again on each connect while the "
        "alert is open; de-duplicate by alert.id.",
        asks_ack=True,
    ),
    ServerEvent(rooms.MAIN, "sos:location", AlertMoved, "A new position, to the contacts."),
    ServerEvent(
        rooms.MAIN, "sos:acknowledged", AlertActed, f"A contact acknowledged, {_TO_ALERT}."
    ),
    ServerEvent(rooms.MAIN, "sos:resolved", AlertActed, f"Resolved, {_TO_ALERT}."),
    ServerEvent(
        rooms.MAIN,
        "sos:escalated",
        AlertEscalated,
        f"Nobody acknowledged in time, {_TO_ALERT}; to contacts with an ack request.",
        asks_ack=True,
    ),
    ServerEvent(rooms.MAIN, "sos:expired", AlertExpired, f"Left open too long, {_TO_ALERT}."),
    ServerEvent(
        rooms.MAIN,
        "sos:delivery",
        AlertDelivery,
        "To the raiser's sockets, as each contact is reached or fails, by channel.",
    ),
    ServerEvent(
        rooms.MAIN,
        "notification",
        NotificationEvent,
        "A stored notification, to every socket of the recipient.",
    ),
    ServerEvent(
        rooms.MAIN,
        "auth:expiring",
        Expiring,
        "60 s before the socket's access token expires: answer with auth:refresh.",
    ),
    ServerEvent(
        rooms.MAIN,
        "auth:expired",
        Empty,
        "The token expired without a refresh: the socket is disconnected next.",
    ),
    ServerEvent(
        rooms.LIVE,
        "donation",
        DonationEvent,
        "Once per donation, to the subscribers of the project.",
    ),
)


class EventCatalog:
    """The client events registered on this node's doors, and the server events."""

    def __init__(self) -> None:
        self._client: dict[tuple[str, str], ClientEvent] = {}

    def add(self, event: ClientEvent) -> None:
        self._client.setdefault((event.namespace, event.name), event)

    @property
    def client_events(self) -> list[ClientEvent]:
        return list(self._client.values())

    @property
    def server_events(self) -> tuple[ServerEvent, ...]:
        return SERVER_EVENTS
