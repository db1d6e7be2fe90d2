"""REST doors of authentication and accounts: register, login, refresh, logout, me,
sessions, codes by email, two-factor, and the operators' user admin."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response, query_int
from services.accounts import AccountService
from services.auth import REGISTRABLE_ROLES, AuthService

__all__ = ["routes"]


def routes(door: RestDoor, auth: AuthService, accounts: AccountService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    def user_agent(request: web.Request) -> str | None:
        return request.headers.get("User-Agent")

    @table.post("/api/v1/auth/register")
    async def register(request: web.Request) -> web.Response:
        body = await door.body(request)
        user, pair = await auth.register(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            display_name=body.string("display_name", max_len=100, strip=True),
            role=body.choice("role", REGISTRABLE_ROLES, default="donor"),
            phone=body.opt_string("phone", max_len=32),
            user_agent=user_agent(request),
            address=door.address(request),
        )
        return json_response({"user": user.public(), **pair.body()}, status=201)

    @table.post("/api/v1/auth/login")
    async def login(request: web.Request) -> web.Response:
        body = await door.body(request)
        user, pair = await auth.login(
            email=body.string("email", max_len=254),
            password=body.string("password", min_len=1, max_len=1024),
            totp=body.opt_string("totp", max_len=16),
            address=door.address(request),
            user_agent=user_agent(request),
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

    # -- sessions ---------------------------------------------------------------------------

    @table.get("/api/v1/me/sessions")
    async def sessions(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        return json_response({"sessions": await auth.sessions(identity)})

    @table.delete("/api/v1/me/sessions/{session_id}")
    async def end_session(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.end_session(identity, request.match_info["session_id"])
        return web.Response(status=204)

    @table.delete("/api/v1/me/sessions")
    async def end_other_sessions(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.end_other_sessions(identity)
        return web.Response(status=204)

    # -- codes by email ---------------------------------------------------------------------

    @table.post("/api/v1/auth/password/forgot")
    async def forgot(request: web.Request) -> web.Response:
        body = await door.body(request)
        await accounts.forgot_password(
            body.string("email", max_len=254), address=door.address(request)
        )
        return json_response({"ok": True}, status=202)

    @table.post("/api/v1/auth/password/reset")
    async def reset(request: web.Request) -> web.Response:
        body = await door.body(request)
        await accounts.reset_password(
            body.string("email", max_len=254),
            body.string("code", max_len=16),
            body.string("password", min_len=1, max_len=1024),
            address=door.address(request),
        )
        return web.Response(status=204)

    @table.post("/api/v1/auth/email/verify/request")
    async def verify_request(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await accounts.request_verification(identity, address=door.address(request))
        return json_response({"ok": True}, status=202)

    @table.post("/api/v1/auth/email/verify")
    async def verify(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        user = await accounts.verify_email(identity, body.string("code", max_len=16))
        return json_response({"user": user.public()})

    # -- two-factor -------------------------------------------------------------------------

    @table.post("/api/v1/me/totp")
    async def totp_begin(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        return json_response(await accounts.totp_begin(identity), status=201)

    @table.post("/api/v1/me/totp/confirm")
    async def totp_confirm(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        await accounts.totp_confirm(identity, body.string("code", max_len=16))
        return web.Response(status=204)

    @table.delete("/api/v1/me/totp")
    async def totp_disable(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        await accounts.totp_disable(identity, body.string("code", max_len=16))
        return web.Response(status=204)

    # -- operators --------------------------------------------------------------------------

    @table.get("/api/v1/admin/users")
    async def admin_users(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        query = request.query.get("q")
        if query is not None and len(query) > 200:
            query = query[:200]
        found = await accounts.list_users(
            identity, query=query, limit=query_int(request, "limit", minimum=1)
        )
        return json_response({"users": [u.public() for u in found]})

    @table.patch("/api/v1/admin/users/{user_id}")
    async def admin_update(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        blocked = body.boolean("blocked") if body.contains("blocked") else None
        user = await accounts.update_user(
            identity,
            request.match_info["user_id"],
            blocked=blocked,
            role=body.opt_string("role", max_len=32),
        )
        return json_response({"user": user.public()})

    return table
