"""REST doors of authentication: register, login, refresh, logout, me."""

from __future__ import annotations

from aiohttp import web

from handlers.common import json_response, read_json, require_identity
from server.keys import NODE
from services.auth import REGISTRABLE_ROLES

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/api/v1/auth/register")
async def register(request: web.Request) -> web.Response:
    body = await read_json(request)
    user, pair = (
        await request.app[NODE]
        .require_auth()
        .register(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            display_name=body.string("display_name", max_len=100, strip=True),
            role=body.choice("role", REGISTRABLE_ROLES, default="donor"),
            phone=body.opt_string("phone", max_len=32),
        )
    )
    return json_response({"user": user.public(), **pair.body()}, status=201)


@routes.post("/api/v1/auth/login")
async def login(request: web.Request) -> web.Response:
    body = await read_json(request)
    user, pair = (
        await request.app[NODE]
        .require_auth()
        .login(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            address=request.remote or "unknown",
        )
    )
    return json_response({"user": user.public(), **pair.body()})


@routes.post("/api/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    body = await read_json(request)
    pair = (
        await request.app[NODE].require_auth().refresh(body.string("refresh_token", max_len=8192))
    )
    return json_response(pair.body())


@routes.post("/api/v1/auth/logout")
async def logout(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    await request.app[NODE].require_auth().logout(identity)
    return web.Response(status=204)


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    user = await request.app[NODE].require_auth().user(identity.user_id)
    return json_response({"user": user.public()})
