"""Schemathesis hooks for tests/test_api_fuzz.py: who the generated requests are.

Loaded by the ``st`` process through SCHEMATHESIS_HOOKS. Every request carries
the server API's key and the bearer token of an operator registered for the
run; the routes that end the caller's own sessions get a throwaway account's
token, so the rest of the run is not left logged out.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import requests
import schemathesis

BASE = os.environ["LIFELINE_FUZZ_URL"]
API_KEY = os.environ["LIFELINE_FUZZ_API_KEY"]
OPERATOR = os.environ["LIFELINE_FUZZ_OPERATOR_EMAIL"]
# The routes that end the session they are called with.
_ENDS_SESSION = {("POST", "/api/v1/auth/logout")}


def _register(email: str) -> str:
    answer = requests.post(
        f"{BASE}/api/v1/auth/register",
        json={"email": email, "password": "fuzzing fuzzing", "display_name": "Fuzzer"},
        timeout=10,
    )
    if answer.status_code == 409:  # registered by an earlier provider call
        answer = requests.post(
            f"{BASE}/api/v1/auth/login",
            json={"email": email, "password": "fuzzing fuzzing"},
            timeout=10,
        )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


@schemathesis.auth(refresh_interval=60)
class Operator:
    def get(self, case: Any, ctx: Any) -> str:
        return _register(OPERATOR)

    def set(self, case: Any, data: str, ctx: Any) -> None:
        token = data
        if (case.operation.method.upper(), case.operation.path) in _ENDS_SESSION:
            token = _register(f"throwaway-{uuid.uuid4().hex[:12]}@example.org")
        case.headers = dict(case.headers or {})
        case.headers["Authorization"] = f"Bearer {token}"
        case.headers["X-Api-Key"] = API_KEY
