"""Events from other services (Kafka records and ``POST /events``): the envelope and
each type's payload, as ``EventService`` parses them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, RootModel

from services.wire.base import RUNTIME, ExternalId, Int, Request, integral, text

__all__ = [
    "CHANNELS",
    "ChannelName",
    "DonationCreated",
    "Envelope",
    "EventBatch",
    "EventsBody",
    "LessonCompleted",
    "NotificationRequested",
    "Payment",
    "ProjectUpdated",
    "UserCreated",
    "UserRef",
]

# The channels every node has (a deployment may register more).
CHANNELS = ("in_app", "push", "sms", "email")

Uuid = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        examples=["0b6f3c1e-8d2a-4c57-9a51-2f0e4a7d9c10"],
        description="a UUID",
    ),
]
UserId = Annotated[str, text(64, description="a user's id (a UUID); unknown ones are skipped")]
ChannelName = Annotated[
    str, text(32, json_schema_extra={"enum": list(CHANNELS), RUNTIME: "channels"})
]


class Envelope(Request):
    """One event, as on Kafka: each ``event_id`` is applied once, however often it comes."""

    event_id: Annotated[str, text(200)]
    type: Annotated[str, text(100)] = Field(
        examples=["donation.created"],
        description="donation.created, notification.requested, project.updated, "
        "user.created, user.blocked, user.unblocked, payment.succeeded, payment.failed, "
        "lesson.completed",
    )
    occurred_at: Annotated[str, text(64)] = Field(
        examples=["2026-11-22T10:00:00.000Z"], description="ISO 8601"
    )
    payload: dict[str, Any] = Field(description="as the type says (see the payload schemas)")


class EventBatch(Request):
    events: list[Envelope] = Field(min_length=1, max_length=500)


class EventsBody(RootModel[EventBatch | Envelope]):
    """One envelope, or ``{events: [envelope...]}``."""


class DonationCreated(Request):
    project_id: ExternalId
    amount_minor: Int = Field(ge=1, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])
    donor_id: Annotated[str, text(64)] | None = None
    donor_display: Annotated[str, text(100)]
    message: Annotated[str, text(500, min_len=0)] | None = None


class NotificationRequested(Request):
    """``notification.requested``; also the body of POST /notifications."""

    user_ids: list[UserId] = Field(min_length=1, max_length=10_000)
    kind: Annotated[str, text(64)] = Field(examples=["reminder"])
    title: Annotated[str, text(200)]
    body: Annotated[str, text(2000)]
    data: dict[str, Any] | None = Field(default=None, description="default {}")
    channels: list[ChannelName] | None = Field(
        default=None, min_length=1, description="default in_app and push"
    )


class ProjectUpdated(Request):
    project_id: ExternalId
    organizer_id: Annotated[str, text(64)] | None = None
    title: Annotated[str, text(200)]
    follower_ids: list[UserId] = Field(default_factory=list, max_length=100_000)
    # Bounds before the validator, so that the schema of the optional value keeps them.
    goal_minor: Annotated[int, Field(ge=1, le=10**15), BeforeValidator(integral)] | None = Field(
        default=None, description="the project's goal, in minor units"
    )


class UserCreated(Request):
    user_id: Uuid
    email: Annotated[str, text(254)]
    display_name: Annotated[str, text(100)]
    role: Literal["patient", "relative", "doctor", "organizer", "donor", "admin"] = "donor"


class UserRef(Request):
    user_id: Uuid


class Payment(Request):
    user_id: UserId
    amount_minor: Int = Field(ge=0, le=10**15)
    currency: Annotated[str, Field(min_length=3, max_length=3, pattern=r"^[^\x00]*$")]
    project_id: ExternalId | None = None
    payment_id: Annotated[str, text(64)] | None = None
    reason: Annotated[str, text(300, min_len=0)] | None = None


class LessonCompleted(Request):
    user_id: UserId
    course_title: Annotated[str, text(200)]
    lesson_title: Annotated[str, text(200)]
