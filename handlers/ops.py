"""Liveness, readiness and metrics; outside the API prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.common import json_response
from services.metrics import Metrics

__all__ = ["routes"]

Readiness = Callable[[], Awaitable[dict[str, str]]]


def routes(*, node_id: str, readiness: Readiness, metrics: Metrics) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "node": node_id})

    @table.get("/readyz")
    async def readyz(request: web.Request) -> web.Response:
        checks = await readiness()
        ready = all(v == "ok" for v in checks.values())
        return json_response(
            {"status": "ready" if ready else "unready", "checks": checks},
            status=200 if ready else 503,
        )

    @table.get("/metrics")
    async def render(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    return table
