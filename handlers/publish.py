"""The server API's ``POST /publish``: emit to a channel on every node, store nothing."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.publish import PublishService
from services.wire import rest

__all__ = ["routes"]


def routes(door: RestDoor, publisher: PublishService) -> Api:
    api = Api(door, tag="server API")

    @api.route(
        "POST",
        "/api/v1/publish",
        summary="Emit an event to a channel on every node (server API)",
        description="`user:<id>` reaches every socket of the user, `room:<id>` the sockets "
        "joined to the room, `project:<id>` the /live subscribers. `data` goes out unchanged; "
        "nothing is stored.",
        auth=Auth.SERVER_KEY,
        body=rest.Publish,
        answers={202: rest.Ok},
        examples={
            "body": {
                "channel": "user:0b6f3c1e-8d2a-4c57-9a51-2f0e4a7d9c10",
                "event": "order:ready",
                "data": {"order_id": "42"},
            }
        },
    )
    async def publish(request: web.Request, body: rest.Publish) -> web.Response:
        await publisher.publish(body.channel, body.event, body.data)
        return json_response({"ok": True}, status=202)

    return api
