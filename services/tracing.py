"""The id of the request being served, for every log line written while serving it."""

from __future__ import annotations

import contextvars

__all__ = ["request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
