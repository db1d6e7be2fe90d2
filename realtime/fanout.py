"""The one fan-out path: every emit of Lifeline goes through ``Fanout``.

An emit is encoded once, as the Socket.IO packet text, for the whole cluster:
this node has its engine write that one packet, framed once, to each local
recipient (no task, no coroutine chain, no re-encoding per recipient, which is
what python-socketio's own ``emit`` costs), and publishes
it msgpack-framed on the peer bus, once per target room, on that room's own
channel: only the nodes holding sockets of the room hear it (interest-based
routing, storage/bus.py), and they do the same with the text they receive.
Control messages (ending the sessions of revoked tokens) go to every node.

Uses python-socketio's public ``manager.get_participants`` and Lifeline's own
engine (realtime/engine.py), nothing private of either library.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgpack
import orjson
import socketio
from socketio import packet as sio_packet
from socketio.msgpack_packet import MsgPackPacket

from realtime import rooms
from realtime.interest import interest_key
from realtime.seam import engine_of
from realtime.servers import SocketServers
from realtime.sessions import SocketSessions
from services.metrics import Metrics
from services.ports import Receipt, ReceiptHandler
from storage.bus import PeerBus

__all__ = ["Fanout"]

log = logging.getLogger(__name__)

_EMIT = b"e"  # first byte of an interest channel's message: an emit, or an ask
_ASK = b"a"
_END_SESSIONS = "end-sessions"


class Fanout:
    def __init__(
        self,
        servers: SocketServers,
        bus: PeerBus,
        sessions: SocketSessions,
        metrics: Metrics,
    ) -> None:
        self._servers = servers
        self._bus = bus
        self._sessions = sessions
        self._metrics = metrics
        self._receipts: dict[str, ReceiptHandler] = {}
        self._room_guard: Callable[[str, int], Awaitable[None]] | None = None
        self._project_news: list[Callable[[str], None]] = []
        bus.on_interest(self._on_interest)
        bus.subscribe(_END_SESSIONS, self._on_peer_end_sessions)
        if servers.interest is not None:
            servers.interest.on_dropped(self._dropped)

    def on_receipt(self, kind: str, handler: ReceiptHandler) -> None:
        """Where acks of emits asking for a ``kind`` receipt go (SOS: the alert service)."""
        self._receipts[kind] = handler

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
        self,
        room_id: str,
        event: str,
        data: Any,
        *,
        skip_sid: str | None = None,
        version: int | None = None,
    ) -> None:
        """``version``: the room's members_version the event was written under; every
        node makes its view of the room's sockets at least that new before delivering."""
        guarded = (room_id, version) if version is not None else None
        if guarded is not None and self._room_guard is not None:
            await self._room_guard(room_id, guarded[1])
        await self._emit(rooms.MAIN, [rooms.room(room_id)], event, data, skip_sid, guarded)

    def on_project_news(self, callback: Callable[[str], None]) -> None:
        """``callback(project_id)`` for every emit to a project's room that reaches this
        node, its own or a peer's (what was cached of that project is stale)."""
        self._project_news.append(callback)

    def guard_rooms(self, guard: Callable[[str, int], Awaitable[None]]) -> None:
        """What makes a node's room sockets match the members (realtime/membership.py)."""
        self._room_guard = guard

    async def to_project(self, project_id: str, event: str, data: Any) -> None:
        await self._emit(rooms.LIVE, [rooms.project(project_id)], event, data, None)

    async def to_channel(self, channel: str, event: str, data: Any) -> None:
        parsed = rooms.parse_channel(channel)
        if parsed is None:
            raise ValueError(f"not a channel: {channel!r}")
        namespace, room = parsed
        await self._emit(namespace, [room], event, data, None)

    async def ask_users(
        self, user_ids: Iterable[str], event: str, data: Any, *, receipt: Receipt
    ) -> None:
        """Emit asking each socket for an ack (SOS: receipts, not presence).

        Each socket gets its own packet through python-socketio's ``emit`` with a
        callback, since an ack id is per socket: this path is for the few events
        that must be confirmed, never for chat's volume.
        """
        users = list(dict.fromkeys(user_ids))
        if not users:
            return
        self._metrics.child(self._metrics.events_out, event).inc()
        await self._ask_local(users, event, data, receipt)
        if self._bus.has_peers:
            await self._bus.publish_to(
                [
                    (
                        _key(rooms.MAIN, rooms.user(u)),
                        _ASK + msgpack.packb([[u], event, data, list(receipt)], use_bin_type=True),
                    )
                    for u in users
                ]
            )

    async def ask_socket(self, sid: str, event: str, data: Any, *, receipt: Receipt) -> None:
        session = self._sessions.get(sid)
        if session is None:
            return
        self._metrics.child(self._metrics.events_out, event).inc()
        await self._ask(sid, session.user_id, event, data, receipt)

    async def _ask_local(
        self, user_ids: list[str], event: str, data: Any, receipt: Receipt
    ) -> None:
        targets = [rooms.user(u) for u in user_ids]
        room: str | list[str] = targets if len(targets) > 1 else targets[0]
        for server in self._servers.all:
            for sid, _ in list(server.manager.get_participants(rooms.MAIN, room)):
                session = self._sessions.get(sid)
                if session is not None:
                    await self._ask(sid, session.user_id, event, data, receipt)

    async def _ask(self, sid: str, user_id: str, event: str, data: Any, receipt: Receipt) -> None:
        kind, key = receipt
        handler = self._receipts.get(kind)

        async def acked(*_: Any) -> None:
            if handler is None:
                return
            try:
                await handler(key, user_id)
            except Exception:
                log.exception("recording a receipt failed", extra={"kind": kind})

        try:
            await self._servers.of(sid).emit(
                event, data, to=sid, namespace=rooms.MAIN, callback=acked
            )
        except Exception:  # the socket went away meanwhile: no receipt, the fallback holds
            log.debug("asking a socket for a receipt failed", exc_info=True)

    async def _on_peer_ask(self, raw: bytes) -> None:
        user_ids, event, data, receipt = msgpack.unpackb(raw, raw=False)
        await self._ask_local(user_ids, event, data, (receipt[0], receipt[1]))

    async def join_room(self, sid: str, room_id: str) -> None:
        await self._servers.enter(sid, rooms.room(room_id), namespace=rooms.MAIN)

    async def leave_room(self, sid: str, room_id: str) -> None:
        await self._servers.of(sid).leave_room(sid, rooms.room(room_id), namespace=rooms.MAIN)

    async def join_project(self, sid: str, project_id: str) -> None:
        await self._servers.enter(sid, rooms.project(project_id), namespace=rooms.LIVE)

    async def leave_project(self, sid: str, project_id: str) -> None:
        server = self._servers.of(sid)
        await server.leave_room(sid, rooms.project(project_id), namespace=rooms.LIVE)

    async def end_sessions(
        self, *, jti: str | None = None, family_id: str | None = None, user_id: str | None = None
    ) -> None:
        await self._end_local_sessions(jti, family_id, user_id)
        if self._bus.has_peers:
            await self._bus.publish(_END_SESSIONS, orjson.dumps([jti, family_id, user_id]))

    async def to_socket(self, sid: str, event: str, data: Any) -> None:
        """One socket of this node (a session's own news: its token is expiring)."""
        self._metrics.child(self._metrics.events_out, event).inc()
        try:
            await self._servers.of(sid).emit(event, data, to=sid, namespace=rooms.MAIN)
        except Exception:  # gone meanwhile
            log.debug("emitting to a socket failed", exc_info=True)

    async def disconnect(self, sid: str) -> None:
        await self._servers.of(sid).disconnect(sid, namespace=rooms.MAIN)

    # -- delivery ---------------------------------------------------------------------------

    async def _emit(
        self,
        namespace: str,
        targets: list[str],
        event: str,
        data: Any,
        skip_sid: str | None,
        guarded: tuple[str, int] | None = None,
    ) -> None:
        self._metrics.child(self._metrics.events_out, event).inc()
        # Encoded once for the whole cluster, in both parsers' forms.
        json_text: str = self._servers.json.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, data]
        ).encode()
        packed: bytes = MsgPackPacket(
            sio_packet.EVENT, namespace=namespace, data=[event, data]
        ).encode()
        self._deliver_all(namespace, targets, json_text, packed, skip_sid)
        if self._bus.has_peers:  # a single node frames nothing for a bus
            items = []
            for target in targets:  # each on its room's channel: heard where it has sockets
                frame: list[Any] = [namespace, [target], json_text, packed, skip_sid]
                if guarded is not None:
                    frame.append(list(guarded))
                items.append(
                    (_key(namespace, target), _EMIT + msgpack.packb(frame, use_bin_type=True))
                )
            await self._bus.publish_to(items)

    def _deliver_all(
        self, namespace: str, targets: list[str], json_text: str, packed: bytes, skip: str | None
    ) -> int:
        if namespace == rooms.LIVE and self._project_news:
            for target in targets:
                project_id = rooms.project_of(target)
                if project_id is not None:
                    for callback in self._project_news:
                        callback(project_id)
        delivered = self._deliver(self._servers.json, namespace, targets, json_text, skip)
        if self._servers.msgpack is not None:
            delivered += self._deliver(self._servers.msgpack, namespace, targets, packed, skip)
        return delivered

    def _deliver(
        self,
        server: socketio.AsyncServer,
        namespace: str,
        targets: list[str],
        encoded: str | bytes,
        skip_sid: str | None,
    ) -> int:
        """Send one broadcast to every local socket of one server in the rooms: the
        engine writes one pre-built frame to each (``Engine.broadcast``)."""
        room: str | list[str] = targets if len(targets) > 1 else targets[0]
        # A list of rooms reaches each socket once, even if it is in several of them.
        eio_sids = [
            eio_sid
            for sid, eio_sid in server.manager.get_participants(namespace, room)
            if sid != skip_sid
        ]
        return engine_of(server).broadcast(eio_sids, encoded) if eio_sids else 0

    def _dropped(self, namespace: str, room: str) -> None:
        # Not listening any more: what was cached of a project can go stale unheard.
        project_id = rooms.project_of(room) if namespace == rooms.LIVE else None
        if project_id is not None:
            for callback in self._project_news:
                callback(project_id)

    async def _on_interest(self, raw: bytes) -> None:
        kind, body = raw[:1], raw[1:]
        if kind == _EMIT:
            await self._on_peer_emit(body)
        elif kind == _ASK:
            await self._on_peer_ask(body)

    async def _on_peer_emit(self, raw: bytes) -> None:
        namespace, targets, json_text, packed, skip_sid, *guarded = msgpack.unpackb(raw, raw=False)
        if guarded and self._room_guard is not None:
            room_id, version = guarded[0]
            await self._room_guard(room_id, version)
        self._deliver_all(namespace, targets, json_text, packed, skip_sid)

    async def _on_peer_end_sessions(self, raw: bytes) -> None:
        jti, family_id, *rest = orjson.loads(raw)
        await self._end_local_sessions(jti, family_id, rest[0] if rest else None)

    async def _end_local_sessions(
        self, jti: str | None, family_id: str | None, user_id: str | None = None
    ) -> None:
        for sid in self._sessions.by_tokens(jti=jti, family_id=family_id, user_id=user_id):
            log.info("disconnecting a socket of a revoked token", extra={"sid": sid})
            await self._servers.of(sid).disconnect(sid, namespace=rooms.MAIN)


def _key(namespace: str, room: str) -> str:
    key = interest_key(namespace, room)
    if key is None:
        raise ValueError(f"not a shared room: {room!r}")
    return key
