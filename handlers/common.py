"""What every REST door shares: JSON in and out, bearer and API-key checks."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from aiohttp import web

from services.addresses import ClientAddresses
from services.auth import AuthService, Identity
from services.errors import Invalid, TooLarge, Unauthorized
from services.validation import Payload, as_payload

__all__ = ["RestDoor", "json_response", "query_bool", "query_int"]


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

    async def body(self, request: web.Request) -> Payload:
        """The JSON object of the body, refused past the payload limit."""
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
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Invalid("body is not valid JSON") from None
        return as_payload(data, "body")

    async def identity(self, request: web.Request) -> Identity:
        """Who sent the bearer token; ``unauthorized`` without a valid one."""
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


def query_int(request: web.Request, name: str, *, minimum: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.lstrip("-").isdigit() or len(raw) > 19:
        raise Invalid(f"{name} must be a whole number")
    value = int(raw)
    if value < minimum:
        raise Invalid(f"{name} must be at least {minimum}")
    return value


def query_bool(request: web.Request, name: str, *, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in ("true", "false"):
        raise Invalid(f"{name} must be true or false")
    return raw == "true"
