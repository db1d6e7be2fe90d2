"""The one fan-out path: every emit of Lifeline goes through ``Fanout``.

An emit is delivered to this node's sockets at once and published once on the
peer bus for the other nodes, which deliver it to theirs. One PUBLISH per
event, whatever the number of recipients; the event is encoded once per node.
Control messages (ending the sessions of revoked tokens) travel the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
import socketio

from realtime import rooms
from realtime.sessions import SocketSessions
from server.metrics import Metrics
from storage.bus import PeerBus

__all__ = ["Fanout"]

log = logging.getLogger(__name__)

_EMIT = "emit"
_END_SESSIONS = "end-sessions"


class Fanout:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        bus: PeerBus,
        sessions: SocketSessions,
        metrics: Metrics,
    ) -> None:
        self._sio = sio
        self._bus = bus
        self._sessions = sessions
        self._metrics = metrics
        bus.subscribe(_EMIT, self._on_peer_emit)
        bus.subscribe(_END_SESSIONS, self._on_peer_end_sessions)

    # -- the port services use ------------------------------------------------------------

    async def to_user(
        self, user_id: str, event: str, data: Any, *, skip_sid: str | None = None
    ) -> None:
        await self._emit(rooms.MAIN, [rooms.user(user_id)], event, data, skip_sid)

    async def to_users(
        self, user_ids: Iterable[str], event: str, data: Any, *, skip_sid: str | None = None
    ) -> None:
        targets = [rooms.user(u) for u in dict.fromkeys(user_ids)]
        if targets:
            await self._emit(rooms.MAIN, targets, event, data, skip_sid)

    async def to_room(
        self, room_id: str, event: str, data: Any, *, skip_sid: str | None = None
    ) -> None:
        await self._emit(rooms.MAIN, [rooms.room(room_id)], event, data, skip_sid)

    async def to_project(self, project_id: str, event: str, data: Any) -> None:
        await self._emit(rooms.LIVE, [rooms.project(project_id)], event, data, None)

    async def to_channel(self, channel: str, event: str, data: Any) -> None:
        parsed = rooms.parse_channel(channel)
        if parsed is None:
            raise ValueError(f"not a channel: {channel!r}")
        namespace, room = parsed
        await self._emit(namespace, [room], event, data, None)

    async def join_room(self, sid: str, room_id: str) -> None:
        await self._sio.enter_room(sid, rooms.room(room_id), namespace=rooms.MAIN)

    async def leave_room(self, sid: str, room_id: str) -> None:
        await self._sio.leave_room(sid, rooms.room(room_id), namespace=rooms.MAIN)

    async def join_project(self, sid: str, project_id: str) -> None:
        await self._sio.enter_room(sid, rooms.project(project_id), namespace=rooms.LIVE)

    async def leave_project(self, sid: str, project_id: str) -> None:
        await self._sio.leave_room(sid, rooms.project(project_id), namespace=rooms.LIVE)

    async def end_sessions(self, *, jti: str | None = None, family_id: str | None = None) -> None:
        await self._end_local_sessions(jti, family_id)
        if self._bus.has_peers:
            await self._bus.publish(_END_SESSIONS, orjson.dumps([jti, family_id]))

    # -- delivery ---------------------------------------------------------------------------

    async def _emit(
        self, namespace: str, targets: list[str], event: str, data: Any, skip_sid: str | None
    ) -> None:
        self._metrics.events_out.labels(event).inc()
        await self._deliver(namespace, targets, event, data, skip_sid)
        if self._bus.has_peers:  # a single node encodes nothing for a bus
            await self._bus.publish(
                _EMIT, orjson.dumps([namespace, targets, event, data, skip_sid])
            )

    async def _deliver(
        self, namespace: str, targets: list[str], event: str, data: Any, skip_sid: str | None
    ) -> None:
        # A list of rooms reaches each socket once, even if it is in several of them.
        await self._sio.emit(
            event,
            data,
            to=targets if len(targets) > 1 else targets[0],
            skip_sid=skip_sid,
            namespace=namespace,
        )

    async def _on_peer_emit(self, raw: bytes) -> None:
        namespace, targets, event, data, skip_sid = orjson.loads(raw)
        await self._deliver(namespace, targets, event, data, skip_sid)

    async def _on_peer_end_sessions(self, raw: bytes) -> None:
        jti, family_id = orjson.loads(raw)
        await self._end_local_sessions(jti, family_id)

    async def _end_local_sessions(self, jti: str | None, family_id: str | None) -> None:
        for sid in self._sessions.by_tokens(jti=jti, family_id=family_id):
            log.info("disconnecting a socket of a revoked token", extra={"sid": sid})
            await self._sio.disconnect(sid, namespace=rooms.MAIN)
