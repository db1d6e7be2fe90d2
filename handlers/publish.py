"""The server API's ``POST /publish``: emit to a channel on every node, store nothing."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response
from services.errors import Invalid
from services.publish import PublishService

__all__ = ["routes"]


def routes(door: RestDoor, publisher: PublishService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/publish")
    async def publish(request: web.Request) -> web.Response:
        door.server_key(request)
        body = await door.body(request)
        channel = body.string("channel", max_len=80)
        event = body.string("event", max_len=100)
        if not body.contains("data"):
            raise Invalid("data is required")
        await publisher.publish(channel, event, body.raw("data"))
        return json_response({"ok": True}, status=202)

    return table
