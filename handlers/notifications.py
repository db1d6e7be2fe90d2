"""REST doors of notifications, devices and preferences, and the server API's events."""

from __future__ import annotations

from aiohttp import web

from handlers.common import (
    json_response,
    query_bool,
    query_int,
    read_json,
    require_api_key,
    require_identity,
)
from server.keys import NODE
from services.errors import Invalid
from services.notifications import parse_preferences

__all__ = ["routes"]

routes = web.RouteTableDef()
_MAX_BATCH = 500


@routes.get("/api/v1/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    found = await request.app[NODE].services.notifications.of_user(
        identity.user_id,
        unread_only=query_bool(request, "unread_only", default=False),
        limit=query_int(request, "limit", minimum=1),
    )
    return json_response({"notifications": [n.public() for n in found]})


@routes.post("/api/v1/notifications")
async def request_notification(request: web.Request) -> web.Response:
    require_api_key(request)
    body = await read_json(request)
    events = request.app[NODE].services.events
    parsed = events.parse_request(body)
    prepared = await request.app[NODE].services.notifications.request(
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


@routes.post("/api/v1/devices")
async def register_device(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    body = await read_json(request)
    device = await request.app[NODE].services.notifications.register_device(
        identity.user_id,
        platform=body.choice("platform", ("android", "ios", "web")),
        push_token=body.string("push_token", max_len=4096),
    )
    return json_response({"device": device}, status=201)


@routes.get("/api/v1/me/preferences")
async def get_preferences(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    prefs = await request.app[NODE].services.notifications.preferences(identity.user_id)
    return json_response({"preferences": prefs.public()})


@routes.put("/api/v1/me/preferences")
async def put_preferences(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    body = await read_json(request)
    prefs = await request.app[NODE].services.notifications.set_preferences(
        identity.user_id, parse_preferences(body.raw_object())
    )
    return json_response({"preferences": prefs.public()})


@routes.post("/api/v1/events")
async def post_events(request: web.Request) -> web.Response:
    require_api_key(request)
    body = await read_json(request)
    raw = body.raw_object()
    batch = raw.get("events", [raw])
    if not isinstance(batch, list) or not 1 <= len(batch) <= _MAX_BATCH:
        raise Invalid(f"events must be a list of 1 to {_MAX_BATCH} envelopes")
    events = request.app[NODE].services.events
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
