"""Events from the rest of the platform, applied once each, whichever door they come in.

Kafka records and ``POST /events`` both land in ``EventService.apply``. The
envelope and payload are checked first (a bad one is ``Invalid``: the Kafka
door dead-letters it), then the effect and the record that the event was
applied commit in one transaction, then sockets and providers are told.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.clock import Clock, iso, parse_iso
from services.errors import Invalid
from services.notifications import DEFAULT_CHANNELS, NotificationService, Prepared
from services.ports import AccountBlocks, Fanout
from services.wire import events as wire
from services.wire.base import Request, parse
from storage.db import Database, Queryable
from storage.events import EventLog
from storage.projects import ProjectRepository
from storage.rooms import as_uuid
from storage.users import UserRepository

__all__ = ["Envelope", "EventService", "UnknownEventType", "parse_envelope"]

log = logging.getLogger(__name__)

_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})


class UnknownEventType(Invalid):
    pass


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    type: str
    occurred_at: float
    payload: dict[str, Any]


def parse_envelope(data: Any) -> Envelope:
    body = data if isinstance(data, wire.Envelope) else parse(wire.Envelope, data, what="event")
    try:
        occurred_at = parse_iso(body.occurred_at).timestamp()
    except ValueError:
        raise Invalid("occurred_at must be an ISO 8601 timestamp") from None
    return Envelope(body.event_id, body.type, occurred_at, body.payload)


def money(amount_minor: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL:
        return f"{amount_minor} {currency}"
    return f"{amount_minor / 100:,.2f} {currency}"


AfterCommit = Callable[[], Awaitable[None]]
Handler = Callable[[Queryable, Envelope, Any], Awaitable[AfterCommit]]


class EventService:
    def __init__(
        self,
        *,
        db: Database,
        projects: ProjectRepository,
        users: UserRepository,
        notifications: NotificationService,
        blocks: AccountBlocks,
        fanout: Fanout,
        clock: Clock,
        on_after_commit_error: Callable[[str], None] = lambda type_: None,
    ) -> None:
        self._on_after_commit_error = on_after_commit_error
        self._db = db
        self._projects = projects
        self._users = users
        self._notifications = notifications
        self._blocks = blocks
        self._fanout = fanout
        self._clock = clock
        # type -> (the payload's model, read before the transaction; the effect inside it)
        self._handlers: dict[str, tuple[type[Request], Handler]] = {
            "donation.created": (wire.DonationCreated, self._donation),
            "notification.requested": (wire.NotificationRequested, self._requested),
            "project.updated": (wire.ProjectUpdated, self._project),
            "user.created": (wire.UserCreated, self._user),
            "payment.succeeded": (wire.Payment, self._payment_succeeded),
            "payment.failed": (wire.Payment, self._payment_failed),
            "lesson.completed": (wire.LessonCompleted, self._lesson),
            "user.blocked": (wire.UserRef, self._user_blocked),
            "user.unblocked": (wire.UserRef, self._user_unblocked),
        }

    @property
    def types(self) -> dict[str, type[Request]]:
        """Each event type with its payload's model (the API documents describe them)."""
        return {type_: model for type_, (model, _) in self._handlers.items()}

    def channels_of(self, request: wire.NotificationRequested) -> tuple[str, ...]:
        """The channels a notification request asks for, each one this node has."""
        if request.channels is None:
            return DEFAULT_CHANNELS
        names = self._notifications.channel_names
        if any(c not in names for c in request.channels):
            raise Invalid(f"channels must be a list of {', '.join(names)}")
        return tuple(dict.fromkeys(request.channels))

    async def apply(self, data: Any, *, source: str) -> bool:
        """Apply one envelope; False if its event_id was applied before."""
        envelope = parse_envelope(data)
        entry = self._handlers.get(envelope.type)
        if entry is None:
            raise UnknownEventType(f"unknown event type {envelope.type!r}")
        model, handle = entry
        parsed = self._payload(envelope.type, parse(model, envelope.payload, what="payload"))
        async with self._db.transaction() as conn:
            if not await EventLog.mark_applied(
                conn, envelope.event_id, type_=envelope.type, source=source
            ):
                return False
            after = await handle(conn, envelope, parsed)
        # Applied and committed: from here on nothing may make a door retry it or
        # dead-letter it. Telling sockets is best effort (the notification is stored).
        try:
            await after()
        except Exception:
            log.exception(
                "telling sockets of an applied event failed", extra={"type": envelope.type}
            )
            self._on_after_commit_error(envelope.type)
        return True

    # -- payloads -----------------------------------------------------------------------------

    def _payload(self, type_: str, payload: Request) -> dict[str, Any]:
        """The checked payload as the effects read it."""
        d = payload.model_dump()
        if isinstance(payload, wire.NotificationRequested):
            d["data"] = d["data"] or {}
            d["channels"] = self.channels_of(payload)
        elif isinstance(payload, wire.ProjectUpdated):
            # Another service's organizer id: kept only when it can name a user here.
            d["organizer_id"] = as_uuid(d["organizer_id"]) if d["organizer_id"] else None
        elif isinstance(payload, wire.UserCreated | wire.UserRef):
            d["user_id"] = as_uuid(d["user_id"])
        return d

    # -- effects ------------------------------------------------------------------------------

    def _after(self, prepared: Prepared, *more: Callable[[], Awaitable[None]]) -> AfterCommit:
        async def run() -> None:
            for step in more:
                await step()
            await self._notifications.dispatch(prepared)

        return run

    async def _donation(self, conn: Queryable, event: Envelope, d: dict[str, Any]) -> AfterCommit:
        totals = await ProjectRepository.add_donation(
            conn,
            event_id=event.event_id,
            project_id=d["project_id"],
            amount_minor=d["amount_minor"],
            currency=d["currency"],
            donor_id=d["donor_id"],
            donor_display=d["donor_display"],
            message=d["message"],
            at=event.occurred_at,
        )
        if totals is None:
            raise Invalid(f"project {d['project_id']} takes another currency than {d['currency']}")
        ticker = {
            "project_id": d["project_id"],
            "total_minor": totals["total_minor"],
            "currency": totals["currency"],
            "donors_count": totals["donors_count"],
            "donation": {
                "amount_minor": d["amount_minor"],
                "donor_display": d["donor_display"],
                "message": d["message"],
                "at": iso(event.occurred_at),
            },
        }
        prepared = Prepared()
        if totals["organizer_id"]:
            prepared = await self._notifications.prepare(
                conn,
                [totals["organizer_id"]],
                kind="donation",
                title="New donation",
                body=f"{d['donor_display']} gave {money(d['amount_minor'], d['currency'])}",
                data={
                    "project_id": d["project_id"],
                    "amount_minor": d["amount_minor"],
                    "currency": d["currency"],
                },
            )

        async def live() -> None:
            await self._fanout.to_project(d["project_id"], "donation", ticker)

        return self._after(prepared, live)

    async def _requested(self, conn: Queryable, _: Envelope, r: dict[str, Any]) -> AfterCommit:
        prepared = await self._notifications.prepare(
            conn,
            r["user_ids"],
            kind=r["kind"],
            title=r["title"],
            body=r["body"],
            data=r["data"],
            channels=r["channels"],
        )
        return self._after(prepared)

    async def _project(self, conn: Queryable, _: Envelope, p: dict[str, Any]) -> AfterCommit:
        await ProjectRepository.upsert(
            conn,
            p["project_id"],
            organizer_id=p["organizer_id"],
            title=p["title"],
            goal_minor=p["goal_minor"],
        )
        prepared = await self._notifications.prepare(
            conn,
            p["follower_ids"],
            kind="project_update",
            title=p["title"],
            body=f"{p['title']} has news.",
            data={"project_id": p["project_id"]},
        )
        return self._after(prepared)

    async def _user(self, conn: Queryable, _: Envelope, u: dict[str, Any]) -> AfterCommit:
        await UserRepository.create_known(
            conn,
            user_id=u["user_id"],
            email=u["email"],
            display_name=u["display_name"],
            role=u["role"],
        )
        return self._after(Prepared())

    async def _user_blocked(self, conn: Queryable, e: Envelope, u: dict[str, Any]) -> AfterCommit:
        return await self._block(conn, e, u["user_id"], blocked=True)

    async def _user_unblocked(self, conn: Queryable, e: Envelope, u: dict[str, Any]) -> AfterCommit:
        return await self._block(conn, e, u["user_id"], blocked=False)

    async def _block(
        self, conn: Queryable, event: Envelope, user_id: str, *, blocked: bool
    ) -> AfterCommit:
        # Not heard of yet: a placeholder holds the block until user.created completes it.
        await UserRepository.ensure_placeholder(conn, user_id)
        await UserRepository.set_blocked(conn, user_id, blocked=blocked)
        await UserRepository.audit(
            conn,
            actor_id=None,
            action="block" if blocked else "unblock",
            target_id=user_id,
            detail={"event_id": event.event_id},
            now=self._clock.now(),
        )

        async def end_sessions() -> None:
            await self._blocks.blocked(user_id, blocked=blocked)

        return self._after(Prepared(), end_sessions)

    async def _payment_succeeded(
        self, conn: Queryable, _: Envelope, p: dict[str, Any]
    ) -> AfterCommit:
        prepared = await self._notifications.prepare(
            conn,
            [p["user_id"]],
            kind="payment",
            title="Payment received",
            body=f"Thank you: your payment of {money(p['amount_minor'], p['currency'])} "
            "went through.",
            data={k: p[k] for k in ("amount_minor", "currency", "project_id", "payment_id")},
        )
        return self._after(prepared)

    async def _payment_failed(self, conn: Queryable, _: Envelope, p: dict[str, Any]) -> AfterCommit:
        reason = f" ({p['reason']})" if p["reason"] else ""
        prepared = await self._notifications.prepare(
            conn,
            [p["user_id"]],
            kind="payment",
            title="Payment failed",
            body=f"Your payment of {money(p['amount_minor'], p['currency'])} did not go through"
            f"{reason}. Nothing was charged.",
            data={k: p[k] for k in ("amount_minor", "currency", "project_id", "payment_id")},
            channels=("in_app", "push", "email"),
        )
        return self._after(prepared)

    async def _lesson(self, conn: Queryable, _: Envelope, p: dict[str, Any]) -> AfterCommit:
        prepared = await self._notifications.prepare(
            conn,
            [p["user_id"]],
            kind="lesson",
            title="Lesson completed",
            body=f"You finished “{p['lesson_title']}” in {p['course_title']}.",
            data={"course_title": p["course_title"], "lesson_title": p["lesson_title"]},
        )
        return self._after(prepared)
