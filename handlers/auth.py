"""REST doors of authentication and accounts: register, login, refresh, logout, me,
sessions, codes by email, two-factor, and the operators' user admin."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.accounts import AccountService
from services.auth import AuthService
from services.wire import rest

__all__ = ["routes"]

_BEARER = Auth.BEARER


def routes(door: RestDoor, auth: AuthService, accounts: AccountService) -> Api:
    api = Api(door, tag="accounts")

    def user_agent(request: web.Request) -> str | None:
        return request.headers.get("User-Agent")

    @api.route(
        "POST",
        "/api/v1/auth/register",
        summary="Create an account and log in",
        auth=Auth.NONE,
        body=rest.Register,
        answers={201: rest.Auth},
        errors=(409, 429),
        examples={
            "body": {
                "email": "ada@example.org",
                "password": "correct horse battery staple",
                "display_name": "Ada",
                "role": "relative",
            }
        },
    )
    async def register(request: web.Request, body: rest.Register) -> web.Response:
        user, pair = await auth.register(
            email=body.email,
            password=body.password,
            display_name=body.display_name,
            role=body.role,
            phone=body.phone,
            user_agent=user_agent(request),
            address=door.address(request),
        )
        return json_response({"user": user.public(), **pair.body()}, status=201)

    @api.route(
        "POST",
        "/api/v1/auth/login",
        summary="Log in (a new session)",
        description="With two-factor on and no `totp`, the answer is 401 with "
        '`"totp_required": true` in the error. Failed logins slow down, then lock out (429).',
        auth=Auth.NONE,
        body=rest.Login,
        answers={200: rest.Auth},
        errors=(401, 403, 429),
    )
    async def login(request: web.Request, body: rest.Login) -> web.Response:
        user, pair = await auth.login(
            email=body.email,
            password=body.password,
            totp=body.totp,
            address=door.address(request),
            user_agent=user_agent(request),
        )
        return json_response({"user": user.public(), **pair.body()})

    @api.route(
        "POST",
        "/api/v1/auth/refresh",
        summary="Rotate a refresh token for a new pair",
        description="The old refresh token is dead; reusing a dead one revokes its whole "
        "family (every token rotated from the same login) and disconnects its sockets.",
        auth=Auth.NONE,
        body=rest.RefreshBody,
        answers={200: rest.Tokens},
        errors=(401, 403),
    )
    async def refresh(request: web.Request, body: rest.RefreshBody) -> web.Response:
        pair = await auth.refresh(body.refresh_token)
        return json_response(pair.body())

    @api.route(
        "POST",
        "/api/v1/auth/logout",
        summary="End this session",
        description="Revokes the access token at once, on every node, with its login's "
        "refresh family; the sockets that authenticated with it are disconnected.",
        auth=_BEARER,
        answers={204: None},
    )
    async def logout(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.logout(identity)
        return web.Response(status=204)

    @api.route(
        "GET", "/api/v1/me", summary="The caller", auth=_BEARER, answers={200: rest.UserAnswer}
    )
    async def me(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        user = await auth.user(identity.user_id)
        return json_response({"user": user.public()})

    # -- sessions ---------------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/v1/me/sessions",
        summary="The caller's logins",
        auth=_BEARER,
        answers={200: rest.Sessions},
    )
    async def sessions(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        return json_response({"sessions": await auth.sessions(identity)})

    @api.route(
        "DELETE",
        "/api/v1/me/sessions/{session_id}",
        summary="End one login",
        description="Revokes its refresh family and access tokens and disconnects its sockets "
        "on every node. A session that is over, or not the caller's, is 404.",
        auth=_BEARER,
        answers={204: None},
    )
    async def end_session(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.end_session(identity, request.match_info["session_id"])
        return web.Response(status=204)

    @api.route(
        "DELETE",
        "/api/v1/me/sessions",
        summary="End every login but this one",
        auth=_BEARER,
        answers={204: None},
    )
    async def end_other_sessions(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await auth.end_other_sessions(identity)
        return web.Response(status=204)

    # -- codes by email ---------------------------------------------------------------------

    @api.route(
        "POST",
        "/api/v1/auth/password/forgot",
        summary="Email a password reset code",
        description="202 whether or not the account exists. Codes are 6 digits, valid 10 "
        "minutes, 5 tries.",
        auth=Auth.NONE,
        body=rest.EmailBody,
        answers={202: rest.Ok},
        errors=(429,),
    )
    async def forgot(request: web.Request, body: rest.EmailBody) -> web.Response:
        await accounts.forgot_password(body.email, address=door.address(request))
        return json_response({"ok": True}, status=202)

    @api.route(
        "POST",
        "/api/v1/auth/password/reset",
        summary="Set a new password with an emailed code",
        description="Ends every session of the account. A wrong or spent code is 400.",
        auth=Auth.NONE,
        body=rest.ResetPassword,
        answers={204: None},
        errors=(429,),
    )
    async def reset(request: web.Request, body: rest.ResetPassword) -> web.Response:
        await accounts.reset_password(
            body.email, body.code, body.password, address=door.address(request)
        )
        return web.Response(status=204)

    @api.route(
        "POST",
        "/api/v1/auth/email/verify/request",
        summary="Email a verification code",
        auth=_BEARER,
        answers={202: rest.Ok},
        errors=(429,),
    )
    async def verify_request(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await accounts.request_verification(identity, address=door.address(request))
        return json_response({"ok": True}, status=202)

    @api.route(
        "POST",
        "/api/v1/auth/email/verify",
        summary="Verify the email address with its code",
        auth=_BEARER,
        body=rest.CodeBody,
        answers={200: rest.UserAnswer},
        errors=(429,),
    )
    async def verify(request: web.Request, body: rest.CodeBody) -> web.Response:
        identity = await door.identity(request)
        user = await accounts.verify_email(identity, body.code)
        return json_response({"user": user.public()})

    # -- two-factor -------------------------------------------------------------------------

    @api.route(
        "POST",
        "/api/v1/me/totp",
        summary="Begin two-factor (TOTP, RFC 6238)",
        description="Answers a new secret; it is on only once confirmed with a code.",
        auth=_BEARER,
        answers={201: rest.TotpSecret},
        errors=(409,),
    )
    async def totp_begin(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        return json_response(await accounts.totp_begin(identity), status=201)

    @api.route(
        "POST",
        "/api/v1/me/totp/confirm",
        summary="Turn two-factor on with a code",
        description="409 when no setup is pending (POST /me/totp first).",
        auth=_BEARER,
        body=rest.CodeBody,
        answers={204: None},
        errors=(409,),
    )
    async def totp_confirm(request: web.Request, body: rest.CodeBody) -> web.Response:
        identity = await door.identity(request)
        await accounts.totp_confirm(identity, body.code)
        return web.Response(status=204)

    @api.route(
        "DELETE",
        "/api/v1/me/totp",
        summary="Turn two-factor off with a code",
        description="409 when two-factor is not on.",
        auth=_BEARER,
        body=rest.CodeBody,
        answers={204: None},
        errors=(409,),
    )
    async def totp_disable(request: web.Request, body: rest.CodeBody) -> web.Response:
        identity = await door.identity(request)
        await accounts.totp_disable(identity, body.code)
        return web.Response(status=204)

    # -- operators --------------------------------------------------------------------------

    @api.route(
        "GET",
        "/api/v1/admin/users",
        summary="Find users (operators)",
        auth=_BEARER,
        query=rest.AdminUsersQuery,
        answers={200: rest.Users},
        errors=(403,),
    )
    async def admin_users(request: web.Request, query: rest.AdminUsersQuery) -> web.Response:
        identity = await door.identity(request)
        found = await accounts.list_users(identity, query=query.q, limit=query.limit)
        return json_response({"users": [u.public() for u in found]})

    @api.route(
        "PATCH",
        "/api/v1/admin/users/{user_id}",
        summary="Block, unblock or change the role of a user (operators)",
        description="Blocking ends every session and socket of the user on every node at "
        "once; a blocked user's login, refresh and connect are 403.",
        auth=_BEARER,
        body=rest.AdminUpdate,
        answers={200: rest.UserAnswer},
        errors=(403,),
    )
    async def admin_update(request: web.Request, body: rest.AdminUpdate) -> web.Response:
        identity = await door.identity(request)
        user = await accounts.update_user(
            identity, request.match_info["user_id"], blocked=body.blocked, role=body.role
        )
        return json_response({"user": user.public()})

    return api
