"""The contract's flat acks: ``{"ok": true, ...}`` or ``{"ok": false, "error": {...}}``."""

from __future__ import annotations

from typing import Any

from services.errors import AppError

__all__ = ["error_ack", "ok_ack"]


def ok_ack(fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ok": True, **fields} if fields else {"ok": True}


def error_ack(error: AppError) -> dict[str, Any]:
    body = error.body()
    return {"ok": False, "error": body}
