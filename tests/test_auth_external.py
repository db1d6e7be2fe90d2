"""Access tokens of an external identity provider (JWKS), and throttling across nodes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from server.settings import Settings
from tests.conftest import ServerFactory, base_settings
from tests.services import free_port


class Provider:
    """A local identity provider publishing its JWKS."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.fetches = 0

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        return kid

    def token(self, kid: str, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "sub": "idp|42",
            "iss": "https://idp.test",
            "aud": "lifeline",
            "exp": now + 60,
            "email": "ext@example.org",
            "name": "External Person",
            **claims,
        }
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    async def jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        keys = []
        for kid, key in self.keys.items():
            entry = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            keys.append({**entry, "kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": keys})


@pytest.fixture
async def provider() -> AsyncIterator[tuple[Provider, str]]:
    idp = Provider()
    app = web.Application()
    app.router.add_get("/jwks.json", idp.jwks)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield idp, f"http://127.0.0.1:{server.port}/jwks.json"
    await server.close()


async def test_external_tokens_verify_against_the_jwks(
    make_server: ServerFactory, db: str, provider: tuple[Provider, str]
) -> None:
    idp, url = provider
    kid = idp.rotate()
    settings: Settings = base_settings(db).with_auth(
        jwks_url=url, jwks_issuer="https://idp.test", jwks_audience="lifeline"
    )
    running = await make_server(settings)
    api = running.api
    status, body, _ = await api.call("GET", "/api/v1/me", token=idp.token(kid))
    assert status == 200
    assert body["user"]["email"] == "ext@example.org"
    first_id = body["user"]["id"]
    # Same subject, same local user.
    assert (await api.call("GET", "/api/v1/me", token=idp.token(kid)))[1]["user"]["id"] == first_id
    # The provider rotates its key: an unknown kid makes Lifeline fetch the JWKS again.
    fetches = idp.fetches
    new_kid = idp.rotate()
    assert (await api.call("GET", "/api/v1/me", token=idp.token(new_kid)))[0] == 200
    assert idp.fetches == fetches + 1
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = [
        idp.token(new_kid, key=stranger),
        idp.token(new_kid, aud="someone-else"),
        idp.token(new_kid, iss="https://evil.test"),
        idp.token(new_kid, exp=int(time.time()) - 5),
    ]
    for token in refused:
        assert (await api.call("GET", "/api/v1/me", token=token))[0] == 401


async def test_without_a_jwks_rs256_tokens_are_refused(
    server: Any, provider: tuple[Provider, str]
) -> None:
    idp, _ = provider
    kid = idp.rotate()
    assert (await server.api.call("GET", "/api/v1/me", token=idp.token(kid)))[0] == 401


async def test_login_throttle_holds_across_nodes(
    make_server: ServerFactory, redis_settings: Settings
) -> None:
    one = await make_server(redis_settings)
    two = await make_server(redis_settings)
    account = await one.api.register(password="the right one")
    email = account.user["email"]
    for node in (one, two, one):
        status, _, _ = await node.api.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": "wrong"}
        )
        assert status == 401
    assert (
        await two.api.call("POST", "/api/v1/auth/login", json={"email": email, "password": "wrong"})
    )[0] == 401
    # Four failures spread over two nodes: the next attempt on either waits.
    status, _, headers = await one.api.call(
        "POST", "/api/v1/auth/login", json={"email": email, "password": "the right one"}
    )
    assert status == 429 and "Retry-After" in headers
