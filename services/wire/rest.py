"""REST bodies, queries and answers of ``/api/v1``: what the handlers parse, and what
the OpenAPI document says each route takes and answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator, ConfigDict, Field, RootModel

from services.wire.base import (
    EMAIL_PATTERN,
    RUNTIME,
    Id,
    Int,
    Reply,
    Request,
    Timestamp,
    text,
    visible,
)
from services.wire.events import ChannelName
from services.wire.objects import (
    Alert,
    AlertListing,
    Contact,
    Message,
    Notification,
    ProjectSummary,
    Recipient,
    Room,
    Session,
    TrailPoint,
    User,
)

# Socket.IO reserves these event names on the client side.
RESERVED_EVENTS = (
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
)

# -- shared pieces --------------------------------------------------------------------------

Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=254,
        pattern=EMAIL_PATTERN,
        examples=["ada@example.org"],
    ),
]
Password = Annotated[str, text(1024, examples=["correct horse battery staple"])]
NewPassword = Annotated[
    str, text(1024, min_len=8, examples=["correct horse battery staple"], description="8 or more")
]
Code = Annotated[
    str, Field(min_length=1, max_length=16, pattern=r"^[^\x00]*$", examples=["123456"])
]
Phone = Annotated[
    str,
    Field(
        min_length=8,
        max_length=32,
        pattern=r"^\+[1-9][0-9 ().-]{6,30}$",
        examples=["+4915112345678"],
        description="international form, kept as E.164; a number no numbering plan "
        "assigns is invalid",
    ),
]
RegistrableRole = Literal["patient", "relative", "doctor", "organizer", "donor"]
AnyRole = Literal["patient", "relative", "doctor", "organizer", "donor", "admin"]
# Words to find: empty or absent finds everything.
SearchText = Annotated[str, text(200, min_len=0)]
Limit = Annotated[
    int | None,
    Field(
        default=None,
        ge=1,
        le=2**53 - 1,
        description="default 50; a value above the maximum is clamped",
    ),
]


class Ok(Reply):
    ok: Literal[True]


# -- accounts and sessions ------------------------------------------------------------------


class Register(Request):
    email: Email
    password: NewPassword
    display_name: Annotated[str, visible(100), AfterValidator(str.strip)]
    role: RegistrableRole = "donor"
    phone: Phone | None = None


class Login(Request):
    email: Email
    password: Password
    totp: Code | None = Field(default=None, description="needed once two-factor is on")


class RefreshBody(Request):
    refresh_token: Annotated[str, text(8192)]


class EmailBody(Request):
    email: Email


class ResetPassword(Request):
    email: Email
    code: Code
    password: NewPassword


class CodeBody(Request):
    code: Code


class AdminUsersQuery(Request):
    q: SearchText | None = Field(default=None, description="part of an email or display name")
    limit: Limit


class AdminUpdate(Request):
    blocked: bool | None = None
    role: AnyRole | None = None


class Auth(Reply):
    user: User
    access_token: str
    refresh_token: str


class Tokens(Reply):
    access_token: str
    refresh_token: str


class UserAnswer(Reply):
    user: User


class Users(Reply):
    users: list[User]


class Sessions(Reply):
    sessions: list[Session]


class TotpSecret(Reply):
    secret: str = Field(description="base32, for an authenticator app")
    otpauth_uri: str


# -- rooms and messages ---------------------------------------------------------------------


class DirectRoom(Request):
    kind: Literal["direct"]
    member_ids: list[Id] = Field(
        min_length=1, max_length=1, description="the other member (exactly one)"
    )


class GroupRoom(Request):
    kind: Literal["group"]
    member_ids: list[Id] = Field(
        default_factory=list, max_length=499, description="the other members"
    )
    title: Annotated[str, text(200)]


class CreateRoom(RootModel[Annotated[DirectRoom | GroupRoom, Field(discriminator="kind")]]):
    """A direct room (unique per pair) or a group (the caller is its owner)."""


class RoomTitle(Request):
    title: Annotated[str, visible(200), AfterValidator(str.strip)]


class AddMembers(Request):
    user_ids: list[Id] = Field(min_length=1, max_length=500)


class MemberRole(Request):
    role: Literal["admin", "member"]


class HistoryQuery(Request):
    before_seq: int | None = Field(default=None, ge=1, le=2**53 - 1, description="exclusive")
    limit: Limit


class SearchQuery(Request):
    q: Annotated[str, visible(200)] = Field(description="the words to find")
    room_id: Id | None = None
    limit: Limit


class RoomAnswer(Reply):
    room: Room


class Rooms(Reply):
    rooms: list[Room]


class Messages(Reply):
    messages: list[Message]


# -- SOS ------------------------------------------------------------------------------------


class AddContact(Request):
    model_config = ConfigDict(
        **Request.model_config,
        json_schema_extra={
            "anyOf": [
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}},
                {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
            ]
        },
    )

    user_id: Id | None = Field(default=None, description="a Lifeline user")
    phone: Phone | None = Field(default=None, description="a contact needs a user_id or a phone")
    name: Annotated[str, visible(100), AfterValidator(str.strip)]


class AlertsQuery(Request):
    status: Literal["open", "all"] = Field(
        default="open", description="open: active or acknowledged"
    )
    limit: Limit


class ContactAnswer(Reply):
    contact: Contact


class Contacts(Reply):
    contacts: list[Contact]


class Alerts(Reply):
    alerts: list[AlertListing]


class AlertDetails(Reply):
    alert: Alert
    trail: list[TrailPoint] = Field(description="oldest first, the raise point first")
    recipients: list[Recipient]
    audit: list[dict[str, Any]] = Field(description="who did what to the alert, oldest first")
    deliveries: list[dict[str, Any]] = Field(description="pushes and SMS sent for the alert")


# -- notifications, devices, preferences ----------------------------------------------------


class NotificationsQuery(Request):
    unread_only: bool = False
    limit: Limit


class Device(Request):
    platform: Literal["android", "ios", "web"]
    push_token: Annotated[str, text(4096)]


class QuietHours(Request):
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["22:00"])
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["07:00"])


class PreferencesBody(Request):
    channels: dict[Annotated[str, text(64)], dict[ChannelName, bool]] = Field(
        default_factory=dict,
        max_length=50,
        description="per notification kind, each channel on or off",
    )
    quiet_hours: QuietHours | None = None
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        description="an IANA time zone",
        examples=["Europe/Berlin"],
        json_schema_extra={"enum": list(sorted(available_timezones()))},
    )


class Notifications(Reply):
    notifications: list[Notification]


class Requested(Reply):
    ids: list[str] = Field(description="one per known user, in order")
    unknown: list[str] = Field(description="user ids Lifeline does not know, skipped")


class DeviceAnswer(Reply):
    device: dict[str, Any]


class Preferences(Reply):
    channels: dict[str, dict[str, bool]]
    quiet_hours: dict[str, str] | None
    time_zone: str


class PreferencesAnswer(Reply):
    preferences: Preferences


# -- donations ------------------------------------------------------------------------------


class ProjectsQuery(Request):
    q: SearchText | None = Field(default=None, description="part of a title or id")
    limit: Limit


class Projects(Reply):
    projects: list[ProjectSummary]


# -- server API -----------------------------------------------------------------------------


class Publish(Request):
    channel: str = Field(
        min_length=1,
        max_length=80,
        pattern=r"^(user|room|project):[^\x00]{1,64}$",
        examples=["room:0b6f3c1e-8d2a-4c57-9a51-2f0e4a7d9c10"],
    )
    event: Annotated[
        str,
        text(
            100,
            json_schema_extra={"not": {"enum": list(RESERVED_EVENTS)}},
            description="any name but those Socket.IO reserves",
        ),
    ]
    data: Any = Field(description="emitted unchanged")


class Applied(Reply):
    applied: int = Field(ge=0)
    duplicates: int = Field(ge=0, description="envelopes whose event_id was applied before")


# -- uploads --------------------------------------------------------------------------------


class Announce(Request):
    name: Annotated[str, visible(255), AfterValidator(str.strip)]
    mime: Annotated[
        str, text(100, examples=["image/jpeg"], json_schema_extra={RUNTIME: "upload_types"})
    ] = Field(description="one of the node's upload types (LIFELINE_UPLOAD_TYPES)")
    size: Int = Field(
        ge=1,
        le=2**53,
        description="bytes, at most the node's LIFELINE_UPLOAD_MAX_BYTES",
        json_schema_extra={RUNTIME: "upload_bytes"},
    )


class UploadTarget(Reply):
    upload_id: str
    url: str = Field(description="where the client sends the bytes")
    method: Literal["PUT", "POST"]
    headers: dict[str, str]
    expires_at: Timestamp


class SignedQuery(Request):
    """What a link the node signed carries; one that does not check out is 403."""

    expires: Annotated[str, text(20, min_len=0)] = ""
    signature: Annotated[str, text(256, min_len=0)] = ""


# -- operations -----------------------------------------------------------------------------


class Health(Reply):
    status: Literal["ok"]
    node: str


class Readiness(Reply):
    status: Literal["ready", "unready"]
    checks: dict[str, str] = Field(description="each store or broker: ok, or what is wrong")


class NodeFigures(Reply):
    node_id: str
    sockets: int = Field(ge=0)
    events_per_s: float
    kafka_lag: float | None = Field(default=None, description="null on nodes without Kafka")


class OpenAlert(Reply):
    id: str
    user_id: str
    display_name: str
    status: Literal["active", "acknowledged"]
    escalation_level: int
    lat: float | None = Field(description="the newest position")
    lon: float | None
    created_at: Timestamp
    recipients: list[Recipient]
    trail: list[TrailPoint] = Field(description="oldest first, the latest 300 points")


class MapTiles(Reply):
    tiles_url: str | None = Field(description="LIFELINE_MAP_TILES_URL; null: the world outline")
    attribution: str


class Overview(Reply):
    """The operator view's figures (admins only)."""

    nodes: list[NodeFigures] = Field(description="every live node of the cluster")
    alerts: list[OpenAlert] = Field(description="open alerts, newest first")
    deliveries: dict[str, dict[str, int]] = Field(
        description="channel -> result -> count, over the last deliveries_since_s seconds"
    )
    deliveries_since_s: int
    map: MapTiles


__all__ = [name for name in dir() if name[0].isupper()]
