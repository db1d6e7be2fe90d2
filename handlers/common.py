"""What every REST door shares: JSON in and out, bearer and API-key checks."""

from __future__ import annotations

import hmac
from contextvars import ContextVar
from typing import Any

import orjson
from aiohttp import web

from services.addresses import ClientAddresses
from services.auth import AuthService, Identity
from services.errors import Invalid, TooLarge, Unauthorized

__all__ = ["RestDoor", "json_response"]

_checked: ContextVar[tuple[web.Request, Identity] | None] = ContextVar(
    "lifeline_checked_identity", default=None
)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class RestDoor:
    """What every REST door shares, built once with what it checks against."""

    def __init__(
        self,
        *,
        auth: AuthService,
        api_key: str,
        max_payload_bytes: int,
        addresses: ClientAddresses | None = None,
    ) -> None:
        self._auth = auth
        self._api_key = api_key.encode()
        self._limit = max_payload_bytes
        self._addresses = addresses or ClientAddresses()

    def address(self, request: web.Request) -> str:
        """The client's address: the TCP peer, or behind a trusted proxy the
        rightmost ``X-Forwarded-For`` hop that is not one of ours."""
        return self._addresses.client(request.remote, request.headers.get("X-Forwarded-For"))

    async def json(self, request: web.Request) -> object:
        """The decoded JSON of the body, refused past the payload limit."""
        limit = self._limit
        # Refuse on the declared length, before reading anything.
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(f"body is larger than {limit} bytes")
        try:
            body = await request.content.read(limit + 1)
        except web.HTTPRequestEntityTooLarge:
            raise TooLarge(f"body is larger than {limit} bytes") from None
        if len(body) > limit:
            raise TooLarge(f"body is larger than {limit} bytes")
        if not body:
            raise Invalid("body must be a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Invalid("body is not valid JSON") from None

    async def identity(self, request: web.Request) -> Identity:
        """Who sent the bearer token; ``unauthorized`` without a valid one (checked once
        per request: the route's declaration checks it before the body is read)."""
        known = _checked.get()
        if known is not None and known[0] is request:
            return known[1]
        identity = await self._verify(request)
        # Each request runs in its own task, so its context holds only its own check.
        _checked.set((request, identity))
        return identity

    async def _verify(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("a bearer token is required")
        return await self._auth.authenticate(token.strip())

    def server_key(self, request: web.Request) -> None:
        """The server API's ``X-Api-Key`` check."""
        given = request.headers.get("X-Api-Key", "")
        if not given or not hmac.compare_digest(given.encode(), self._api_key):
            raise Unauthorized("a valid X-Api-Key header is required")
