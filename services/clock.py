"""Injected time, so timeouts are tested by moving a clock, not by sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "iso", "parse_iso"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock)."""
        ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def iso(moment: datetime | float) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as the contract requires."""
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    # strftime's %Y does not pad years before 1000; ISO 8601 wants four digits.
    return (
        f"{moment.year:04d}-"
        + moment.strftime("%m-%dT%H:%M:%S.")
        + (f"{moment.microsecond // 1000:03d}Z")
    )


def parse_iso(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
