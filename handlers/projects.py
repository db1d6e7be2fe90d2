"""The public ticker of a project."""

from __future__ import annotations

from aiohttp import web

from handlers.common import json_response
from server.keys import NODE
from services.errors import Invalid

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/api/v1/projects/{project_id}/ticker")
async def ticker(request: web.Request) -> web.Response:
    project_id = request.match_info["project_id"]
    if not 1 <= len(project_id) <= 64:
        raise Invalid("project_id must be 1 to 64 characters")
    return json_response(await request.app[NODE].services.tickers.ticker(project_id))
