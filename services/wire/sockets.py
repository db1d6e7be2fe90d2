"""Socket.IO payloads: what clients emit (checked at the door), what the acks carry,
and every event the server emits; the AsyncAPI document is built from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from services.wire.base import ExternalId, Id, Reply, Request, Timestamp, integral, text
from services.wire.objects import Alert, Message, NotificationEvent, Room, Ticker, User

MAX_TEXT = 4000
MAX_ATTACHMENTS = 10

ClientMsgId = Annotated[str, text(128, description="the client's id for this change, for retries")]
Lat = Annotated[float, Field(ge=-90.0, le=90.0)]
Lon = Annotated[float, Field(ge=-180.0, le=180.0)]
Accuracy = Annotated[float, Field(ge=0.0, le=1e7, description="metres")]
# Bounds before the validator, so that the schema keeps them wherever Seq is used.
Seq = Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(integral)]

# -- what clients emit ----------------------------------------------------------------------


class TokenRefresh(Request):
    token: Annotated[str, text(8192, description="a fresh access token of the same user")]


class RoomRef(Request):
    room_id: Id


class ChatSend(Request):
    room_id: Id
    client_msg_id: ClientMsgId
    text: Annotated[str, text(MAX_TEXT)]
    attachments: list[Id] | None = Field(
        default=None, max_length=MAX_ATTACHMENTS, description="upload ids of the sender's"
    )


class ChatEdit(Request):
    room_id: Id
    message_id: Id
    text: Annotated[str, text(MAX_TEXT)]
    client_msg_id: ClientMsgId


class ChatDelete(Request):
    room_id: Id
    message_id: Id
    client_msg_id: ClientMsgId


class Typing(Request):
    room_id: Id
    typing: bool


class ReadMarker(Request):
    room_id: Id
    seq: Seq


class Sync(Request):
    rooms: dict[Id, Seq] = Field(description="room id -> the last seq the client has")


class ClientState(Request):
    foreground: bool


class RaiseAlert(Request):
    client_alert_id: ClientMsgId
    lat: Lat
    lon: Lon
    accuracy_m: Accuracy | None = None
    note: Annotated[str, text(1000, min_len=0)] | None = None


class AlertLocation(Request):
    alert_id: Id
    lat: Lat
    lon: Lon
    accuracy_m: Accuracy | None = None


class AlertRef(Request):
    alert_id: Id


class NotificationsRead(Request):
    ids: list[Id] = Field(default_factory=list, max_length=500)


class ProjectRef(Request):
    project_id: ExternalId


# -- what acks carry (besides ok: true) -----------------------------------------------------


class Empty(Reply):
    pass


class Expiry(Reply):
    expires_at: Timestamp


class Joined(Reply):
    room: Room
    online_user_ids: list[str] = Field(description="users with a socket joined, the caller too")


class MessageAck(Reply):
    message: Message


class Synced(Reply):
    messages: dict[str, list[Message]] = Field(description="per room, oldest first, seq > last")
    more: list[str] = Field(description="rooms cut short at 500: sync again from the last seq")
    denied: list[str] = Field(description="rooms the caller may not read")


class AlertAck(Reply):
    alert: Alert


class TickerAck(Reply):
    ticker: Ticker


# -- what the server emits ------------------------------------------------------------------


class ChatMessage(Reply):
    message: Message


class TypingEvent(Reply):
    room_id: str
    user_id: str
    typing: bool


class ReadEvent(Reply):
    room_id: str
    user_id: str
    seq: int


class Presence(Reply):
    room_id: str
    user_id: str
    status: Literal["online", "offline"]


class RoomRemoved(Reply):
    room_id: str


class AlertRaised(Reply):
    alert: Alert
    user: User = Field(description="the raiser")


class AlertMoved(Reply):
    alert_id: str
    lat: float
    lon: float
    at: Timestamp


class AlertActed(Reply):
    alert_id: str
    by_user_id: str


class AlertEscalated(Reply):
    alert_id: str
    level: int = Field(ge=1)


class AlertExpired(Reply):
    alert_id: str


class AlertDelivery(Reply):
    alert_id: str
    contact_id: str
    user_id: str | None
    channel: Literal["socket", "push", "sms"]
    status: Literal["reached", "failed"]
    at: Timestamp


class Expiring(Reply):
    expires_at: Timestamp


class DonationItem(Reply):
    amount_minor: int = Field(ge=0)
    donor_display: str
    message: str | None
    at: Timestamp


class DonationEvent(Reply):
    project_id: str
    total_minor: int = Field(ge=0)
    currency: str
    donors_count: int = Field(ge=0)
    donation: DonationItem


__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_TEXT",
    "AlertAck",
    "AlertActed",
    "AlertDelivery",
    "AlertEscalated",
    "AlertExpired",
    "AlertLocation",
    "AlertMoved",
    "AlertRaised",
    "AlertRef",
    "ChatDelete",
    "ChatEdit",
    "ChatMessage",
    "ChatSend",
    "ClientState",
    "DonationEvent",
    "Empty",
    "Expiring",
    "Expiry",
    "Joined",
    "MessageAck",
    "NotificationEvent",
    "NotificationsRead",
    "Presence",
    "ProjectRef",
    "RaiseAlert",
    "ReadEvent",
    "ReadMarker",
    "RoomRef",
    "RoomRemoved",
    "Sync",
    "Synced",
    "TickerAck",
    "TokenRefresh",
    "Typing",
    "TypingEvent",
]
