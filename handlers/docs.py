"""The API described as served: the OpenAPI and AsyncAPI documents and a page for people.

The documents are built once, when the node is composed, from the same route
and event declarations the doors validate with; ``/api/docs`` renders the
OpenAPI one with Swagger UI, installed from the npm registry beside the
dashboard's other libraries and served by the node under its strict CSP.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from handlers.api import Api, Auth
from handlers.dashboard import STATIC

__all__ = ["ApiDocuments", "routes"]


@dataclass(slots=True)
class ApiDocuments:
    """Filled in by the composition root once every route and event is declared."""

    openapi: bytes = b""
    asyncapi: bytes = b""


def _document(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type="application/json",
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )


def routes(documents: ApiDocuments) -> tuple[Api, web.RouteTableDef]:
    """(the described routes of the documents, the page and its assets)."""
    api = Api(None, tag="operations")
    table = web.RouteTableDef()

    @api.route(
        "GET",
        "/api/v1/openapi.json",
        summary="This document: the REST API (OpenAPI 3.1)",
        auth=Auth.NONE,
        answers={200: None},
    )
    async def openapi(request: web.Request) -> web.Response:
        return _document(documents.openapi)

    @api.route(
        "GET",
        "/api/v1/asyncapi.json",
        summary="The Socket.IO API (AsyncAPI 3.0)",
        auth=Auth.NONE,
        answers={200: None},
    )
    async def asyncapi(request: web.Request) -> web.Response:
        return _document(documents.asyncapi)

    @table.get("/api/docs")
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "api-docs.html", headers={"Cache-Control": "no-cache"})

    return api, table
