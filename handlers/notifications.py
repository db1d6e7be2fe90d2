"""REST doors of notifications, devices and preferences, and the server API's events."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.errors import Invalid
from services.events import EventService
from services.notifications import NotificationService
from services.wire import events as incoming
from services.wire import rest

__all__ = ["routes"]


def routes(door: RestDoor, notifications: NotificationService, events: EventService) -> Api:
    api = Api(door, tag="notifications")

    @api.route(
        "GET",
        "/api/v1/notifications",
        summary="The caller's notifications, newest first",
        auth=Auth.BEARER,
        query=rest.NotificationsQuery,
        answers={200: rest.Notifications},
    )
    async def list_notifications(
        request: web.Request, query: rest.NotificationsQuery
    ) -> web.Response:
        identity = await door.identity(request)
        found = await notifications.of_user(
            identity.user_id, unread_only=query.unread_only, limit=query.limit
        )
        return json_response({"notifications": [n.public() for n in found]})

    @api.route(
        "POST",
        "/api/v1/notifications",
        summary="Request notifications (server API)",
        description="Same payload and effect as the Kafka `notification.requested` event: "
        "stored, then delivered on each channel. Unknown user ids are listed and skipped.",
        auth=Auth.SERVER_KEY,
        body=incoming.NotificationRequested,
        answers={202: rest.Requested},
        examples={
            "body": {
                "user_ids": ["0b6f3c1e-8d2a-4c57-9a51-2f0e4a7d9c10"],
                "kind": "reminder",
                "title": "Your appointment",
                "body": "Tomorrow at 10:00",
                "channels": ["in_app", "push"],
            }
        },
    )
    async def request_notification(
        request: web.Request, body: incoming.NotificationRequested
    ) -> web.Response:
        prepared = await notifications.request(
            body.user_ids,
            kind=body.kind,
            title=body.title,
            body=body.body,
            data=body.data or {},
            channels=events.channels_of(body),
        )
        return json_response(
            {"ids": [r.id for r in prepared.records], "unknown": prepared.unknown}, status=202
        )

    @api.route(
        "POST",
        "/api/v1/devices",
        summary="Register a device for pushes",
        auth=Auth.BEARER,
        body=rest.Device,
        answers={201: rest.DeviceAnswer},
    )
    async def register_device(request: web.Request, body: rest.Device) -> web.Response:
        identity = await door.identity(request)
        device = await notifications.register_device(
            identity.user_id, platform=body.platform, push_token=body.push_token
        )
        return json_response({"device": device}, status=201)

    @api.route(
        "GET",
        "/api/v1/me/preferences",
        summary="The caller's notification preferences",
        auth=Auth.BEARER,
        answers={200: rest.PreferencesAnswer},
    )
    async def get_preferences(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        prefs = await notifications.preferences(identity.user_id)
        return json_response({"preferences": prefs.public()})

    @api.route(
        "PUT",
        "/api/v1/me/preferences",
        summary="Replace the caller's notification preferences",
        description="Channels per kind, quiet hours (pushes wait, SOS never does) and the "
        "time zone they are read in.",
        auth=Auth.BEARER,
        body=rest.PreferencesBody,
        answers={200: rest.PreferencesAnswer},
    )
    async def put_preferences(request: web.Request, body: rest.PreferencesBody) -> web.Response:
        identity = await door.identity(request)
        prefs = await notifications.set_preferences(identity.user_id, body.model_dump())
        return json_response({"preferences": prefs.public()})

    @api.route(
        "POST",
        "/api/v1/events",
        summary="Apply events (server API, for deployments without Kafka)",
        description="One envelope, or `{events: [envelope...]}`, applied exactly as if "
        "consumed from Kafka: the same handlers, each `event_id` once. Events may name users "
        "or projects Lifeline has not heard of yet; they are applied anyway.",
        auth=Auth.SERVER_KEY,
        body=incoming.EventsBody,
        answers={202: rest.Applied},
    )
    async def post_events(request: web.Request, body: incoming.EventsBody) -> web.Response:
        batch = body.root.events if isinstance(body.root, incoming.EventBatch) else [body.root]
        applied = duplicates = 0
        for n, envelope in enumerate(batch):
            try:
                if await events.apply(envelope, source="http"):
                    applied += 1
                else:
                    duplicates += 1
            except Invalid as exc:
                # The envelopes before this one are applied; say which one failed.
                raise Invalid(f"events[{n}]: {exc.message} ({applied} applied before it)") from None
        return json_response({"applied": applied, "duplicates": duplicates}, status=202)

    return api
