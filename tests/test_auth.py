"""Authentication as the contract states it, on a single node."""

from __future__ import annotations

import time
import uuid

import asyncpg
import jwt
import pytest

from storage.crypto import FieldCipher, parse_keys
from tests.conftest import FakeClock, Running, ServerFactory
from tests.services import DATA_KEYS, JWT_SECRET


async def test_register_answers_user_and_pair(server: Running) -> None:
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/auth/register",
        json={"email": "Ann@Example.org", "password": "long enough", "display_name": "Ann"},
    )
    assert status == 201
    assert body["user"]["email"] == "Ann@Example.org"
    assert body["user"]["role"] == "donor"
    assert isinstance(body["user"]["id"], str)
    assert set(body["user"]) == {"id", "email", "display_name", "role", "blocked", "email_verified"}
    assert body["user"]["blocked"] is False and body["user"]["email_verified"] is False
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"], issuer="lifeline")
    assert claims["sub"] == body["user"]["id"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    refresh = jwt.decode(body["refresh_token"], JWT_SECRET, algorithms=["HS256"], issuer="lifeline")
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600


async def test_register_rejects_bad_input_and_duplicates(server: Running) -> None:
    api = server.api
    await api.register(email="dup@example.org")
    cases = [
        ({"email": "DUP@example.org", "password": "long enough", "display_name": "x"}, 409),
        ({"email": "not-an-email", "password": "long enough", "display_name": "x"}, 400),
        ({"email": "a@example.org", "password": "short", "display_name": "x"}, 400),
        (
            {
                "email": "a@example.org",
                "password": "long enough",
                "display_name": "x",
                "role": "admin",
            },
            400,
        ),
        (
            {
                "email": "a@example.org",
                "password": "long enough",
                "display_name": "x",
                "phone": "12",
            },
            400,
        ),
        ({"email": 5, "password": "long enough", "display_name": "x"}, 400),
        ({"password": "long enough", "display_name": "x"}, 400),
    ]
    for body, expected in cases:
        status, answer, _ = await api.call("POST", "/api/v1/auth/register", json=body)
        assert status == expected, (body, answer)
        assert answer["error"]["code"] == ("conflict" if expected == 409 else "invalid")


async def test_register_stores_phone_in_e164(server: Running, db: str) -> None:
    account = await server.api.register(role="patient", phone="+49 151 23456789")
    assert account.user["role"] == "patient"
    conn = await asyncpg.connect(db)
    try:
        stored = await conn.fetchval("SELECT phone FROM users WHERE id = $1::uuid", account.id)
    finally:
        await conn.close()
    # Encrypted at rest; normalised to E.164 underneath.
    assert FieldCipher(parse_keys(DATA_KEYS)).decrypt(stored, "phone") == "+4915123456789"


async def test_login_and_me(server: Running) -> None:
    account = await server.api.register(email="me@example.org", password="pass words")
    status, body, _ = await server.api.call(
        "POST", "/api/v1/auth/login", json={"email": "ME@example.org", "password": "pass words"}
    )
    assert status == 200 and body["user"]["id"] == account.id
    status, me, _ = await server.api.call("GET", "/api/v1/me", token=body["access_token"])
    assert status == 200 and me == {"user": account.user}
    status, body, _ = await server.api.call(
        "POST", "/api/v1/auth/login", json={"email": "me@example.org", "password": "wrong one"}
    )
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await server.api.call("GET", "/api/v1/me")
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_refresh_rotates_and_reuse_revokes_the_family(server: Running) -> None:
    api = server.api
    account = await api.register()
    status, first, _ = await api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert status == 200 and first["refresh_token"] != account.refresh_token
    status, second, _ = await api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert status == 200
    # The first refresh token is dead: reusing it revokes the whole family.
    status, body, _ = await api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, _, _ = await api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert status == 401
    for access in (account.access_token, first["access_token"], second["access_token"]):
        status, _, _ = await api.call("GET", "/api/v1/me", token=access)
        assert status == 401
    # Another login is a new family and works.
    status, _, _ = await api.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": account.user["email"], "password": account.password},
    )
    assert status == 200


async def test_logout_revokes_the_access_token_at_once(server: Running) -> None:
    api = server.api
    account = await api.register()
    other = await api.call(
        "POST",
        "/api/v1/auth/login",
        json={"email": account.user["email"], "password": account.password},
    )
    status, _, _ = await api.call("POST", "/api/v1/auth/logout", token=account.access_token)
    assert status == 204
    status, _, _ = await api.call("GET", "/api/v1/me", token=account.access_token)
    assert status == 401
    # The session's refresh token dies with it; another device's login does not.
    status, _, _ = await api.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
    )
    assert status == 401
    status, _, _ = await api.call("GET", "/api/v1/me", token=other[1]["access_token"])
    assert status == 200


async def test_revocation_survives_a_restart_of_a_single_node(
    make_server: ServerFactory,
) -> None:
    first = await make_server()
    account = await first.api.register()
    assert (await first.api.call("POST", "/api/v1/auth/logout", token=account.access_token))[
        0
    ] == 204
    await first.server.close()
    second = await make_server()
    status, _, _ = await second.api.call("GET", "/api/v1/me", token=account.access_token)
    assert status == 401


def _forge(claims: dict[str, object], key: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


async def test_tokens_that_must_be_refused(server: Running, clock: FakeClock) -> None:
    api = server.api
    account = await api.register()
    claims = jwt.decode(account.access_token, JWT_SECRET, algorithms=["HS256"], issuer="lifeline")
    now = int(time.time())
    unsigned = jwt.encode({**claims}, key="", algorithm="none")
    refused = {
        "refresh token as access": account.refresh_token,
        "alg none": unsigned,
        "other key": _forge(claims, key="another-secret-" + "y" * 40),
        "expired": _forge({**claims, "iat": now - 100, "exp": now - 1}),
        "wrong issuer": _forge({**claims, "iss": "someone-else"}),
        "no jti": _forge({k: v for k, v in claims.items() if k != "jti"}),
        "garbage": "not.a.token",
    }
    for name, token in refused.items():
        status, body, _ = await api.call("GET", "/api/v1/me", token=token)
        assert status == 401, name
        assert body == {"error": {"code": "unauthorized", "message": body["error"]["message"]}}
    # Expiry follows the injected clock too.
    assert (await api.call("GET", "/api/v1/me", token=account.access_token))[0] == 200
    clock.advance(15 * 60 + 1)
    assert (await api.call("GET", "/api/v1/me", token=account.access_token))[0] == 401


async def test_login_brute_force_gets_delays_then_lockout(server: Running) -> None:
    api = server.api
    account = await api.register(password="the right one")
    email = account.user["email"]

    async def attempt(password: str) -> tuple[int, object, object]:
        return await api.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": password}
        )

    statuses = []
    for _ in range(3):
        statuses.append((await attempt("wrong"))[0])
    assert statuses == [401, 401, 401]
    # The fourth failure starts a delay: even the right password waits.
    assert (await attempt("wrong"))[0] == 401
    status, body, headers = await attempt("the right one")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1


async def test_lockout_then_success_resets_the_account(
    make_server: ServerFactory, clock: FakeClock
) -> None:
    running = await make_server()
    api = running.api
    account = await api.register(password="the right one")
    email = account.user["email"]

    async def attempt(password: str) -> int:
        return (
            await api.call(
                "POST", "/api/v1/auth/login", json={"email": email, "password": password}
            )
        )[0]

    failures = 0
    while failures < 10:
        status, _, headers = await api.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": "wrong"}
        )
        if status == 429:  # wait out the growing delay, as a patient client would
            clock.advance(int(headers["Retry-After"]))
        else:
            assert status == 401
            failures += 1
    status, _, headers = await api.call(
        "POST", "/api/v1/auth/login", json={"email": email, "password": "the right one"}
    )
    assert status == 429 and int(headers["Retry-After"]) > 60  # locked out
    clock.advance(15 * 60 + 1)
    assert await attempt("the right one") == 200
    # The count was reset: a new failure is plain 401, not a delay.
    assert await attempt("wrong") == 401
    assert await attempt("the right one") == 200


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/auth/logout"])
async def test_bearer_is_required(server: Running, path: str) -> None:
    method = "GET" if path.endswith("me") else "POST"
    status, body, _ = await server.api.call(method, path, headers={"Authorization": "Basic x"})
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_unknown_user_id_in_valid_token(server: Running) -> None:
    token = _forge(
        {
            "sub": str(uuid.uuid4()),
            "typ": "access",
            "jti": str(uuid.uuid4()),
            "fid": str(uuid.uuid4()),
            "iss": "lifeline",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        }
    )
    status, body, _ = await server.api.call("GET", "/api/v1/me", token=token)
    assert status == 401 and body["error"]["code"] == "unauthorized"
