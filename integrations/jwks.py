"""Access tokens of an external identity provider, verified against its JWKS.

Keys are fetched over HTTP, cached by ``kid`` and fetched again when a token
names a ``kid`` not in the cache, at most ``max_fetches_per_minute`` times a
minute, so tokens with made-up kids cannot turn us into a fetch storm.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import aiohttp
import jwt
from jwt import PyJWK

__all__ = ["JwksError", "JwksVerifier"]

_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class JwksError(Exception):
    """The token does not verify against the provider's keys."""


class JwksVerifier:
    def __init__(
        self,
        url: str,
        *,
        issuer: str | None,
        audience: str | None,
        session: aiohttp.ClientSession,
        max_fetches_per_minute: int = 10,
    ) -> None:
        self._url = url
        self._issuer = issuer
        self._audience = audience
        self._session = session
        self._keys: dict[str, PyJWK] = {}
        self._fetches: deque[float] = deque()
        self._max_fetches = max_fetches_per_minute
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise JwksError("malformed token") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") not in _ALGORITHMS:
            raise JwksError("token has no usable kid or algorithm")
        key = self._keys.get(kid)
        if key is None:
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise JwksError("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[str(header["alg"])],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise JwksError(str(exc)) from exc
        return claims

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            while self._fetches and now - self._fetches[0] > 60.0:
                self._fetches.popleft()
            if len(self._fetches) >= self._max_fetches:
                return
            self._fetches.append(now)
            try:
                async with self._session.get(
                    self._url, timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    response.raise_for_status()
                    document = json.loads(await response.read())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return
            keys: dict[str, PyJWK] = {}
            for entry in document.get("keys", []) if isinstance(document, dict) else []:
                try:
                    jwk = PyJWK(entry)
                except jwt.PyJWTError:
                    continue
                if jwk.key_id:
                    keys[jwk.key_id] = jwk
            if keys:
                self._keys = keys
