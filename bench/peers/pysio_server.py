"""The plain, idiomatic python-socketio + aiohttp app doing what Lifeline's /live does.

``live:subscribe`` joins ``project:<id>``; ``POST /api/v1/publish`` broadcasts with
``sio.emit``; with REDIS_URL python-socketio's own AsyncRedisManager spreads it.
"""

from __future__ import annotations

import os
from typing import Any

import socketio
from aiohttp import web

redis_url = os.environ.get("REDIS_URL")
manager = (
    socketio.AsyncRedisManager(redis_url, channel=os.environ.get("REDIS_PREFIX", "bench"))
    if redis_url
    else None
)
sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
app = web.Application()
sio.attach(app)


@sio.on("live:subscribe", namespace="/live")
async def subscribe(sid: str, payload: dict[str, Any]) -> dict[str, Any]:
    await sio.enter_room(sid, "project:" + payload["project_id"], namespace="/live")
    return {"ok": True, "ticker": {"project_id": payload["project_id"]}}


@sio.on("connect", namespace="/live")
async def connect(sid: str, environ: dict[str, Any]) -> None:
    return None


async def publish(request: web.Request) -> web.Response:
    body = await request.json()
    await sio.emit(body["event"], body["data"], room=body["channel"], namespace="/live")
    return web.json_response({"ok": True}, status=202)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


app.router.add_post("/api/v1/publish", publish)
app.router.add_get("/healthz", healthz)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3001")), print=None)
