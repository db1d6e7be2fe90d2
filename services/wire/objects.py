"""The objects the contract names, as the server sends them (REST answers, acks, events)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from services.wire.base import Amount, Currency, Reply, Timestamp

__all__ = [
    "Alert",
    "AlertListing",
    "Attachment",
    "Contact",
    "Donation",
    "DonationSeries",
    "Member",
    "Message",
    "Notification",
    "NotificationEvent",
    "ProjectSummary",
    "Recipient",
    "Room",
    "Session",
    "Ticker",
    "TokenPair",
    "TrailPoint",
    "User",
]

Role = Literal["patient", "relative", "doctor", "organizer", "donor", "admin"]
AlertStatus = Literal["active", "acknowledged", "resolved", "expired"]
MessageKind = Literal[
    "text",
    "member_added",
    "member_removed",
    "role_changed",
    "title_changed",
    "edit",
    "delete",
]


class User(Reply):
    id: str
    email: str
    display_name: str
    role: Role
    blocked: bool
    email_verified: bool


class TokenPair(Reply):
    access_token: str = Field(description="JWT (HS256), about 15 minutes")
    refresh_token: str = Field(description="single use: refreshing answers a new pair")
    token_type: str | None = None
    expires_in: int | None = Field(default=None, description="seconds the access token lives")


class Member(Reply):
    user_id: str
    role: Literal["owner", "admin", "member"]


class Room(Reply):
    id: str
    kind: Literal["direct", "group"]
    title: str | None
    member_ids: list[str] = Field(description="every member, the caller included")
    members: list[Member]
    last_seq: int = Field(ge=0, description="0 while the room is empty")
    unread: int | None = Field(
        default=None,
        ge=0,
        description="in GET /rooms: messages of others above the caller's read marker",
    )


class Attachment(Reply):
    id: str
    name: str
    mime: str
    size: int
    url: str = Field(description="a short-lived signed link for members")


class Message(Reply):
    id: str
    room_id: str
    seq: int = Field(ge=1, description="per room, from 1, without gaps")
    sender_id: str
    kind: MessageKind = "text"
    text: str = Field(description="empty for a deleted message and for room events")
    target_id: str | None = Field(
        default=None, description="the message an edit or delete refers to"
    )
    data: dict[str, Any] | None = Field(
        default=None, description="room events: {user_ids}, {user_id, role} or {title}"
    )
    created_at: Timestamp
    edited_at: Timestamp | None = None
    deleted: bool = False
    attachments: list[Attachment] = []
    highlight: str | None = Field(default=None, description="in search results: the match")


class Contact(Reply):
    id: str
    user_id: str | None
    name: str
    phone: str | None = Field(description="E.164, masked where shown to others")


class Alert(Reply):
    id: str
    user_id: str
    status: AlertStatus
    lat: float
    lon: float
    accuracy_m: float | None = None
    note: str | None = None
    created_at: Timestamp
    acknowledged_by: str | None = None
    closed_by: str | None = None
    escalation_level: int = 0


class TrailPoint(Reply):
    lat: float
    lon: float
    accuracy_m: float | None
    at: Timestamp


class Reached(Reply):
    channel: Literal["socket", "push", "sms"]
    at: Timestamp


class Recipient(Reply):
    contact_id: str
    user_id: str | None
    name: str
    reached: Reached | None
    acknowledged_at: Timestamp | None
    failed: bool | None = None


class AlertListing(Reply):
    alert: Alert
    user: User | None = Field(description="the raiser")
    role: Literal["raiser", "contact"]


class NotificationEvent(Reply):
    """The ``notification`` event."""

    id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: Timestamp


class Notification(NotificationEvent):
    """A stored notification, as GET /notifications lists it."""

    read: bool


class Donation(Reply):
    amount_minor: Amount
    donor_display: str
    message: str | None
    at: Timestamp


class Ticker(Reply):
    project_id: str
    title: str | None = Field(default=None, description="from project.updated, when known")
    goal_minor: Amount | None = Field(default=None, description="the goal, when known")
    total_minor: Amount
    currency: Currency | None = Field(description="null for a project never heard of")
    donors_count: int = Field(ge=0)
    recent: list[Donation] = Field(description="the latest donations, newest first")


class Session(Reply):
    id: str
    created_at: Timestamp
    last_used_at: Timestamp
    user_agent: str | None
    ip: str | None = Field(description="the last part masked")
    current: bool


class ProjectSummary(Reply):
    project_id: str
    title: str | None
    currency: Currency | None
    total_minor: Amount
    donors_count: int = Field(ge=0)
    goal_minor: Amount | None
    updated_at: Timestamp


class Bucket(Reply):
    at: Timestamp = Field(description="the bucket's start")
    amount_minor: Amount
    donations: int = Field(ge=0)


class DonationSeries(Reply):
    project_id: str
    currency: Currency | None
    hourly: list[Bucket] = Field(description="the last 48 hours, one bucket an hour, oldest first")
    daily: list[Bucket] = Field(description="the 60 days before, one bucket a day, oldest first")
