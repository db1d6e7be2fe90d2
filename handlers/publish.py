"""The server API's ``POST /publish``: emit to a channel on every node, store nothing."""

from __future__ import annotations

from aiohttp import web

from handlers.common import json_response, read_json, require_api_key
from server.keys import NODE
from services.errors import Invalid

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/api/v1/publish")
async def publish(request: web.Request) -> web.Response:
    require_api_key(request)
    body = await read_json(request)
    channel = body.string("channel", max_len=80)
    event = body.string("event", max_len=100)
    if not body.contains("data"):
        raise Invalid("data is required")
    await request.app[NODE].services.publisher.publish(channel, event, body.raw("data"))
    return json_response({"ok": True}, status=202)
