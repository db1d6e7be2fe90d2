"""The public ticker of a project."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import json_response
from services.donations import TickerService
from services.errors import Invalid
from services.wire.objects import Ticker

__all__ = ["routes"]


def routes(tickers: TickerService) -> Api:
    api = Api(None, tag="donations")

    @api.route(
        "GET",
        "/api/v1/projects/{project_id}/ticker",
        summary="A project's donation ticker (public)",
        description="A project never heard of answers a zero ticker (currency null, recent "
        "empty). Live updates: subscribe on the /live namespace.",
        auth=Auth.NONE,
        answers={200: Ticker},
        errors=(400,),
    )
    async def ticker(request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        if not 1 <= len(project_id) <= 64:
            raise Invalid("project_id must be 1 to 64 characters")
        return json_response(await tickers.ticker(project_id))

    return api
