"""Liveness, readiness and metrics; outside the API prefix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import json_response
from services.metrics import Metrics
from services.wire.rest import Health, Readiness

__all__ = ["routes"]

Checks = Callable[[], Awaitable[dict[str, str]]]


def routes(*, node_id: str, readiness: Checks, metrics: Metrics) -> Api:
    api = Api(None, tag="operations")

    @api.route(
        "GET",
        "/healthz",
        summary="Liveness: the process answers",
        auth=Auth.NONE,
        answers={200: Health},
    )
    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok", "node": node_id})

    @api.route(
        "GET",
        "/readyz",
        summary="Readiness: every store and broker answers",
        description="503 with the same body while one does not (take the node out of the "
        "load balancer).",
        auth=Auth.NONE,
        answers={200: Readiness, 503: Readiness},
    )
    async def readyz(request: web.Request) -> web.Response:
        checks = await readiness()
        ready = all(v == "ok" for v in checks.values())
        return json_response(
            {"status": "ready" if ready else "unready", "checks": checks},
            status=200 if ready else 503,
        )

    @api.route(
        "GET",
        "/metrics",
        summary="Prometheus metrics",
        auth=Auth.NONE,
        answers={200: None},
        answer_type="text/plain",
    )
    async def render(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    return api
