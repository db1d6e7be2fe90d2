"""Bad input of any kind gets the contract's error shape and status, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import Running


def _shape(body: object, code: str) -> None:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]


async def test_unknown_path_and_wrong_method(server: Running) -> None:
    for path in ("/nope", "/api/v1/nope", "/api/v1/auth/nope"):
        status, body, _ = await server.api.call("GET", path)
        assert status == 404, path
        _shape(body, "not_found")
    status, body, _ = await server.api.call("DELETE", "/api/v1/auth/login")
    assert status == 405
    _shape(body, "invalid")
    status, body, _ = await server.api.call("POST", "/healthz")
    assert status == 405
    _shape(body, "invalid")


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"",
        b"null",
        b'{"email": ["a"], "password": {"x": 1}}',
        b'{"email": "\\u0000@x.org", "password": "aaaaaaaaaa", "display_name": "x"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"email": "a@b.org", "password": NaN, "display_name": "x"}',
    ],
)
async def test_malformed_bodies_are_invalid(server: Running, raw: bytes) -> None:
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/auth/register",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    _shape(body, "invalid")


async def test_oversize_body_is_refused(server: Running) -> None:
    big = b'{"email": "' + b"a" * (70 * 1024) + b'"}'
    status, body, _ = await server.api.call(
        "POST", "/api/v1/auth/login", data=big, headers={"Content-Type": "application/json"}
    )
    assert status == 413
    _shape(body, "too_large")


async def test_oversize_chunked_body_is_refused(server: Running) -> None:
    async def chunks():  # no Content-Length: the server must count as it reads
        for _ in range(100):
            yield b"a" * 1024

    async with server.api.http.post(server.url + "/api/v1/auth/login", data=chunks()) as response:
        assert response.status == 413
        _shape(await response.json(), "too_large")
    # The node still serves.
    assert (await server.api.call("GET", "/healthz"))[0] == 200


async def test_server_api_needs_the_key(server: Running) -> None:
    body = {"channel": "user:1", "event": "x", "data": {}}
    for headers in ({}, {"X-Api-Key": "wrong"}):
        status, answer, _ = await server.api.call(
            "POST", "/api/v1/publish", json=body, headers=headers
        )
        assert status == 401
        _shape(answer, "unauthorized")
