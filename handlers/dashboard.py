"""The web dashboard: static pages and their one data route, all served by the node itself.

The pages load only their own scripts (the Content Security Policy forbids
inline ones) and the socket.io client installed from the npm registry by
the project's setup (``npm ci --prefix handlers/dashboard``), never a CDN.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.errors import Unavailable
from services.ops import OpsService
from services.wire.rest import Overview

__all__ = ["CSP", "routes"]

_HERE = Path(__file__).resolve().parent / "dashboard"
STATIC = _HERE / "static"
VENDOR = _HERE / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


def routes(door: RestDoor, ops: OpsService) -> tuple[web.RouteTableDef, Api]:
    """The pages (not part of the API) and the operator view's data route."""
    table = web.RouteTableDef()
    api = Api(door, tag="operations")

    @table.get("/")
    async def index(request: web.Request) -> web.FileResponse:
        return _page("index.html")

    @table.get("/projects/{project_id}")
    async def project(request: web.Request) -> web.FileResponse:
        return _page("project.html")

    @table.get("/operator")
    async def operator(request: web.Request) -> web.FileResponse:
        return _page("operator.html")

    @table.get("/static/vendor/socket.io.min.js")
    async def socketio_client(request: web.Request) -> web.FileResponse:
        if not VENDOR.is_file():
            raise Unavailable(
                "the dashboard's socket.io client is not installed: run scripts/setup"
            )
        return web.FileResponse(VENDOR, headers={"Cache-Control": "public, max-age=3600"})

    table.static("/static", STATIC)

    @api.route(
        "GET",
        "/api/v1/ops/overview",
        summary="The operator view's figures (operators)",
        description="Nodes with their sockets and events per second, open SOS alerts with "
        "their contacts' state, delivery results by channel.",
        auth=Auth.BEARER,
        answers={200: Overview},
        errors=(403,),
    )
    async def overview(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        return json_response(await ops.overview(identity.user_id))

    return table, api
