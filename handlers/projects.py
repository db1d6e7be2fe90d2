"""The public ticker of a project."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import json_response
from services.donations import TickerService
from services.errors import Invalid
from services.wire import rest
from services.wire.objects import DonationSeries, Ticker

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

    @api.route(
        "GET",
        "/api/v1/projects",
        summary="The projects Lifeline knows, with their totals (public)",
        description="Known from project.updated and donations, the most recently active "
        "first; `q` finds titles and ids containing it. Default 50, at most 200.",
        auth=Auth.NONE,
        query=rest.ProjectsQuery,
        answers={200: rest.Projects},
    )
    async def projects(request: web.Request, query: rest.ProjectsQuery) -> web.Response:
        found = await tickers.projects(query=query.q, limit=query.limit)
        return json_response({"projects": found})

    @api.route(
        "GET",
        "/api/v1/projects/{project_id}/series",
        summary="A project's donations over time (public)",
        description="Per hour for the last 48 hours and per day for the 60 days before, "
        "every bucket present; a project never heard of has only zero buckets.",
        auth=Auth.NONE,
        answers={200: DonationSeries},
        errors=(400,),
    )
    async def series(request: web.Request) -> web.Response:
        project_id = request.match_info["project_id"]
        if not 1 <= len(project_id) <= 64:
            raise Invalid("project_id must be 1 to 64 characters")
        return json_response(await tickers.series(project_id))

    return api
