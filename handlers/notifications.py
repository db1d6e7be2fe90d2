"""REST doors of notifications, devices and preferences, and the server API's events."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response, query_bool, query_int
from services.errors import Invalid
from services.events import EventService
from services.notifications import NotificationService

__all__ = ["routes"]

_MAX_BATCH = 500


def routes(
    door: RestDoor, notifications: NotificationService, events: EventService
) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/api/v1/notifications")
    async def list_notifications(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        found = await notifications.of_user(
            identity.user_id,
            unread_only=query_bool(request, "unread_only", default=False),
            limit=query_int(request, "limit", minimum=1),
        )
        return json_response({"notifications": [n.public() for n in found]})

    @table.post("/api/v1/notifications")
    async def request_notification(request: web.Request) -> web.Response:
        door.server_key(request)
        body = await door.body(request)
        parsed = events.parse_request(body)
        prepared = await notifications.request(
            parsed["user_ids"],
            kind=parsed["kind"],
            title=parsed["title"],
            body=parsed["body"],
            data=parsed["data"],
            channels=parsed["channels"],
        )
        return json_response(
            {"ids": [r.id for r in prepared.records], "unknown": prepared.unknown}, status=202
        )

    @table.post("/api/v1/devices")
    async def register_device(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        device = await notifications.register_device(
            identity.user_id,
            platform=body.choice("platform", ("android", "ios", "web")),
            push_token=body.string("push_token", max_len=4096),
        )
        return json_response({"device": device}, status=201)

    @table.get("/api/v1/me/preferences")
    async def get_preferences(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        prefs = await notifications.preferences(identity.user_id)
        return json_response({"preferences": prefs.public()})

    @table.put("/api/v1/me/preferences")
    async def put_preferences(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        prefs = await notifications.set_preferences(identity.user_id, body.raw_object())
        return json_response({"preferences": prefs.public()})

    @table.post("/api/v1/events")
    async def post_events(request: web.Request) -> web.Response:
        door.server_key(request)
        body = await door.body(request)
        raw = body.raw_object()
        batch = raw.get("events", [raw])
        if not isinstance(batch, list) or not 1 <= len(batch) <= _MAX_BATCH:
            raise Invalid(f"events must be a list of 1 to {_MAX_BATCH} envelopes")
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

    return table
