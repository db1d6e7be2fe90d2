"""Limits against floods: connections per address, sockets per user, events per socket.

Connection limits count in the shared state (Redis in a cluster), so they hold
across nodes; the per-socket event budget is local, as a socket lives on one node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.errors import RateLimited
from services.presence import PresenceService
from storage.state import EphemeralState

__all__ = ["AbuseLimits", "ConnectionPolicy", "EventBudget"]


@dataclass(frozen=True, slots=True)
class AbuseLimits:
    connections_per_address: int = 120
    connection_window_s: float = 10.0
    sockets_per_user: int = 20
    events_per_s: float = 20.0
    event_burst: int = 60
    # Refused events in a row after which a socket is cut off.
    strikes_to_disconnect: int = 100


class ConnectionPolicy:
    def __init__(
        self, state: EphemeralState, presence: PresenceService, limits: AbuseLimits
    ) -> None:
        self._state = state
        self._presence = presence
        self._limits = limits

    async def admit_address(self, address: str) -> None:
        count, retry_after = await self._state.incr(
            f"conn-rate:{address}", self._limits.connection_window_s
        )
        if count > self._limits.connections_per_address:
            raise RateLimited("too many connections from this address", retry_after=retry_after)

    async def admit_user(self, user_id: str) -> None:
        if await self._presence.socket_count(user_id) >= self._limits.sockets_per_user:
            raise RateLimited(f"at most {self._limits.sockets_per_user} connections per account")


class EventBudget:
    """A token bucket per socket; too many refusals in a row and the socket is cut off."""

    def __init__(self, limits: AbuseLimits, monotonic: Callable[[], float]) -> None:
        self._limits = limits
        self._now = monotonic
        # sid -> [tokens, last refill, refusals in a row]
        self._buckets: dict[str, list[float]] = {}

    def spend(self, sid: str) -> bool | None:
        """True: go ahead; False: refuse this one; None: refuse and disconnect."""
        now = self._now()
        bucket = self._buckets.get(sid)
        if bucket is None:
            bucket = self._buckets[sid] = [float(self._limits.event_burst), now, 0.0]
        tokens = min(
            float(self._limits.event_burst),
            bucket[0] + (now - bucket[1]) * self._limits.events_per_s,
        )
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0], bucket[2] = tokens - 1.0, 0.0
            return True
        bucket[0] = tokens
        bucket[2] += 1
        # The disconnect is asked for once; what the socket sends meanwhile is refused.
        return None if bucket[2] == self._limits.strikes_to_disconnect else False

    def forget(self, sid: str) -> None:
        self._buckets.pop(sid, None)
