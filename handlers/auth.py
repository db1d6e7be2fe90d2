"""REST doors of authentication: register, login, refresh, logout, me."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response
from services.auth import REGISTRABLE_ROLES, AuthService

__all__ = ["routes"]


def routes(door: RestDoor, auth: AuthService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/auth/register")
    async def register(request: web.Request) -> web.Response:
        body = await door.body(request)
        user, pair = await auth.register(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            display_name=body.string("display_name", max_len=100, strip=True),
            role=body.choice("role", REGISTRABLE_ROLES, default="donor"),
            phone=body.opt_string("phone", max_len=32),
        )
        return json_response({"user": user.public(), **pair.body()}, status=201)

    @table.post("/api/v1/auth/login")
    async def login(request: web.Request) -> web.Response:
        body = await door.body(request)
        user, pair = await auth.login(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            address=request.remote or "unknown",
        )
        return json_response({"user": user.public(), **pair.body()})

    @table.post("/api/v1/auth/refresh")
    async def refresh(request: web.Request) -> web.Response:
        body = await door.body(request)
        pair = await auth.refresh(body.string("refresh_token", max_len=8192))
        return json_response(pair.body())

    @table.post("/api/v1/auth/logout")
    async def logout(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.logout(identity)
        return web.Response(status=204)

    @table.get("/api/v1/me")
    async def me(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        user = await auth.user(identity.user_id)
        return json_response({"user": user.public()})

    return table
