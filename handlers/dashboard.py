"""The web dashboard: static pages and their one data route, all served by the node itself.

The pages load only their own scripts (the Content Security Policy forbids
inline ones) and the socket.io client installed from the npm registry by
the project's setup (``npm ci --prefix handlers/dashboard``), never a CDN.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.errors import NotFound, Unavailable
from services.ops import OpsService
from services.wire.rest import Overview

__all__ = ["CSP", "content_security_policy", "routes"]

_HERE = Path(__file__).resolve().parent / "dashboard"
STATIC = _HERE / "static"
_MODULES = _HERE / "node_modules"
# What the pages load from the npm registry's packages (pinned in package-lock.json),
# served by the node itself: /static/vendor/<name>.
VENDOR: dict[str, tuple[str, str]] = {
    "socket.io.min.js": ("socket.io-client/dist/socket.io.min.js", "application/javascript"),
    "uplot.min.js": ("uplot/dist/uPlot.iife.min.js", "application/javascript"),
    "uplot.min.css": ("uplot/dist/uPlot.min.css", "text/css"),
    "leaflet.js": ("leaflet/dist/leaflet.js", "application/javascript"),
    "leaflet.css": ("leaflet/dist/leaflet.css", "text/css"),
    "topojson-client.min.js": (
        "topojson-client/dist/topojson-client.min.js",
        "application/javascript",
    ),
    # Natural Earth's land at 1:110m (world-atlas): the map's coastline with no tile server.
    "land-110m.json": ("world-atlas/land-110m.json", "application/json"),
    "swagger-ui-bundle.js": ("swagger-ui-dist/swagger-ui-bundle.js", "application/javascript"),
    "swagger-ui.css": ("swagger-ui-dist/swagger-ui.css", "text/css"),
}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def content_security_policy(tiles_url: str = "") -> str:
    """The one policy of every page; a configured map tile server's origin may serve
    images, and no other."""
    if not tiles_url:
        return CSP
    parts = urlsplit(tiles_url)
    origin = f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"
    return CSP.replace("img-src 'self' data:", f"img-src 'self' data: {origin}")


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


def routes(
    door: RestDoor, ops: OpsService, *, map_tiles: tuple[str, str] = ("", "")
) -> tuple[web.RouteTableDef, Api]:
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

    @table.get("/static/vendor/{name}")
    async def vendor(request: web.Request) -> web.FileResponse:
        entry = VENDOR.get(request.match_info["name"])
        if entry is None:
            raise NotFound("no such file")
        path = _MODULES / entry[0]
        if not path.is_file():
            raise Unavailable("the dashboard's libraries are not installed: run scripts/setup")
        return web.FileResponse(
            path, headers={"Content-Type": entry[1], "Cache-Control": "public, max-age=3600"}
        )

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
        figures = await ops.overview(identity.user_id)
        figures["map"] = {"tiles_url": map_tiles[0] or None, "attribution": map_tiles[1]}
        return json_response(figures)

    return table, api
