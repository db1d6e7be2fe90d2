"""Sockets live as long as their access token: one heap per node, no timer per socket.

Each socket's token has two moments: ``warn_s`` before it expires the socket
hears ``auth:expiring {expires_at}``; at expiry, ``auth:expired {}`` and a
disconnect. ``auth:refresh`` swaps the token and pushes its two moments; the
old ones are skipped when they come up (the session's jti no longer matches),
as are those of sockets gone meanwhile. Pushing is O(log n), a tick pops only
what is due, and the heap is rebuilt from the live sessions when dead entries
outnumber them, so 100,000 sockets cost two small tuples each.
"""

from __future__ import annotations

import asyncio
import heapq
import logging

from realtime.fanout import Fanout
from realtime.sessions import SocketSession, SocketSessions
from services.clock import Clock, iso

__all__ = ["TokenExpiry"]

log = logging.getLogger(__name__)

_EXPIRING, _EXPIRED = 0, 1


class TokenExpiry:
    def __init__(
        self,
        sessions: SocketSessions,
        fanout: Fanout,
        clock: Clock,
        *,
        warn_s: float = 60.0,
        tick_s: float = 0.25,
    ) -> None:
        self._sessions = sessions
        self._fanout = fanout
        self._clock = clock
        self._warn_s = warn_s
        self._tick_s = tick_s
        self._heap: list[tuple[float, int, str, str]] = []

    def watch(self, session: SocketSession) -> None:
        """Schedule the socket's current token (at connect, and after each refresh)."""
        expires_at = session.identity.expires_at
        jti = session.identity.jti
        heapq.heappush(self._heap, (expires_at - self._warn_s, _EXPIRING, session.sid, jti))
        heapq.heappush(self._heap, (expires_at, _EXPIRED, session.sid, jti))
        if len(self._heap) > 4 * len(self._sessions) + 1024:
            self._compact()

    def expired(self, session: SocketSession) -> bool:
        return session.identity.expires_at <= self._clock.now()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                await self.tick()
            except Exception:
                log.warning("token expiry round failed; retrying", exc_info=True)

    async def tick(self) -> None:
        now = self._clock.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, kind, sid, jti = heapq.heappop(heap)
            session = self._sessions.get(sid)
            if session is None or session.identity.jti != jti:
                continue  # gone, or refreshed onto another token
            if kind == _EXPIRING:
                await self._fanout.to_socket(
                    sid, "auth:expiring", {"expires_at": iso(session.identity.expires_at)}
                )
            else:
                log.info("disconnecting a socket whose token expired", extra={"sid": sid})
                await self._fanout.to_socket(sid, "auth:expired", {})
                await self._fanout.disconnect(sid)

    def _compact(self) -> None:
        live = {s.sid: s.identity.jti for s in self._sessions}
        self._heap = [e for e in self._heap if live.get(e[2]) == e[3]]
        heapq.heapify(self._heap)
