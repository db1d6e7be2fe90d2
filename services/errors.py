"""The one error tree of Lifeline.

    AppError(code, message)          -> {"error": {"code", "message"}} / {"ok": false, "error": ...}
    ├── Invalid          invalid       400
    ├── Unauthorized     unauthorized  401
    ├── Forbidden        forbidden     403
    ├── NotFound         not_found     404
    ├── Conflict         conflict      409
    ├── TooLarge         too_large     413
    ├── RateLimited      rate_limited  429   (retry_after seconds)
    ├── Unavailable      unavailable   503
    └── Internal         internal      500

It is mapped to JSON in handlers/errors.py and to acks in realtime/acks.py.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AppError",
    "Conflict",
    "Forbidden",
    "Internal",
    "Invalid",
    "MethodNotAllowed",
    "NotFound",
    "RateLimited",
    "TooLarge",
    "TotpRequired",
    "Unauthorized",
    "Unavailable",
]


class AppError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class Invalid(AppError):
    code = "invalid"
    status = 400
    default_message = "invalid request"


class MethodNotAllowed(Invalid):
    status = 405
    default_message = "method not allowed"


class Unauthorized(AppError):
    code = "unauthorized"
    status = 401
    default_message = "unauthorized"


class TotpRequired(Unauthorized):
    """Login needs the second factor: the answer says so, so the app can ask for it."""

    default_message = "this account needs its one-time code (totp)"

    def body(self) -> dict[str, Any]:
        return {**super().body(), "totp_required": True}


class Forbidden(AppError):
    code = "forbidden"
    status = 403
    default_message = "forbidden"


class NotFound(AppError):
    code = "not_found"
    status = 404
    default_message = "not found"


class Conflict(AppError):
    code = "conflict"
    status = 409
    default_message = "conflict"


class TooLarge(AppError):
    code = "too_large"
    status = 413
    default_message = "payload too large"


class RateLimited(AppError):
    code = "rate_limited"
    status = 429
    default_message = "too many requests"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after": self.retry_after}


class Unavailable(AppError):
    code = "unavailable"
    status = 503
    default_message = "service unavailable, try again"


class Internal(AppError):
    pass
