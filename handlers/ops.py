"""Liveness, readiness and metrics; outside the API prefix."""

from __future__ import annotations

import asyncio

from aiohttp import web

from handlers.common import json_response
from server.keys import NODE

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "node": request.app[NODE].settings.node_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    node = request.app[NODE]
    checks: dict[str, str] = {}

    async def check(name: str, probe: object) -> None:
        try:
            await asyncio.wait_for(probe, timeout=2.0)  # type: ignore[arg-type]
            checks[name] = "ok"
        except Exception:
            checks[name] = "down"

    await check("postgres", node.require_pool().fetchval("SELECT 1"))
    if node.redis is not None:
        await check("redis", node.redis.ping())
        checks["redis_pubsub"] = "ok" if node.bus is not None and node.bus.healthy else "down"
    for name, probe in node.readiness.items():
        checks[name] = "ok" if probe() else "down"
    ready = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ready" if ready else "unready", "checks": checks},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[NODE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})
