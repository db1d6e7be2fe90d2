"""Each node's view of who may be in a chat room's Socket.IO room, kept by version.

Every membership change bumps the room's ``members_version``, and every room
event and message is fanned out with the version it was written under. Before
a node delivers one to a room's sockets it makes sure its view is at least that
new: when it is older, it reads the members once and makes the sockets of
anyone no longer a member leave the room. A lost or late invalidation cannot
leave a node wrong: the next message carries the version and corrects it. A
removed member's sockets are out of the room before anything written after
their removal (a higher seq, never a lower version) reaches them, whichever
node they are on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from realtime import rooms
from realtime.servers import SocketServers
from realtime.sessions import SocketSessions

__all__ = ["RoomMembers"]

log = logging.getLogger(__name__)

Loader = Callable[[str], Awaitable[tuple[int, list[str]]]]
Evicted = Callable[[str, str], Awaitable[None]]


class RoomMembers:
    def __init__(
        self,
        servers: SocketServers,
        sessions: SocketSessions,
        *,
        load: Loader,
        evicted: Evicted,
        limit: int = 50_000,
    ) -> None:
        self._servers = servers
        self._sessions = sessions
        self._load = load
        self._evicted = evicted
        self._limit = limit
        self._versions: OrderedDict[str, int] = OrderedDict()

    async def ensure(self, room_id: str, version: int) -> None:
        known = self._versions.get(room_id)
        if known is not None and known >= version:
            self._versions.move_to_end(room_id)
            return
        current, members = await self._load(room_id)
        allowed = set(members)
        name = rooms.room(room_id)
        for server in self._servers.all:
            for sid, _ in list(server.manager.get_participants(rooms.MAIN, name)):
                session = self._sessions.get(sid)
                if session is not None and session.user_id in allowed:
                    continue
                await server.leave_room(sid, name, namespace=rooms.MAIN)
                try:
                    await self._evicted(sid, room_id)
                except Exception:
                    log.warning("evicting a socket from a room failed", exc_info=True)
        self._versions[room_id] = max(current, version)
        self._versions.move_to_end(room_id)
        if len(self._versions) > self._limit:
            self._versions.popitem(last=False)
