"""The public ticker of a project."""

from __future__ import annotations

from aiohttp import web

from handlers.common import json_response
from services.donations import TickerService
from services.errors import Invalid

__all__ = ["routes"]


def routes(tickers: TickerService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/api/v1/projects/{project_id}/ticker")
    async def ticker(request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        if not 1 <= len(project_id) <= 64:
            raise Invalid("project_id must be 1 to 64 characters")
        return json_response(await tickers.ticker(project_id))

    return table
