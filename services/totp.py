"""TOTP (RFC 6238) with pyotp: 30 s steps, one step of clock drift either way, no replays."""

from __future__ import annotations

import hmac

import pyotp

__all__ = ["new_secret", "provisioning_uri", "totp_step"]

_STEP_S = 30
_DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret, interval=_STEP_S).provisioning_uri(name=account, issuer_name=issuer)


def totp_step(secret: str, code: str, *, now: float, after: int | None) -> int | None:
    """The time step ``code`` is valid for (within the drift), if later than ``after``
    (the step of the last code accepted, which is then spent), else None."""
    if not (isinstance(code, str) and len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, interval=_STEP_S)
    current = int(now // _STEP_S)
    for step in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.at(step * _STEP_S), code):
            return step if after is None or step > after else None
    return None
