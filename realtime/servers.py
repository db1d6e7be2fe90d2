"""This node's Socket.IO servers: the JSON one, and optionally one speaking the
socket.io-msgpack-parser protocol on its own path, and which one each socket is on.

Both serve the same namespaces, events and rooms; fan-out reaches the sockets of both.
"""

from __future__ import annotations

import socketio

from realtime.interest import Interest

__all__ = ["SocketServers"]


class SocketServers:
    def __init__(
        self,
        json_server: socketio.AsyncServer,
        *,
        interest: Interest | None = None,
    ) -> None:
        self.json = json_server
        self.interest = interest
        self.msgpack: socketio.AsyncServer | None = None
        self._of: dict[str, socketio.AsyncServer] = {}

    @property
    def all(self) -> list[socketio.AsyncServer]:
        return [self.json] if self.msgpack is None else [self.json, self.msgpack]

    def bind(self, sid: str, server: socketio.AsyncServer) -> None:
        if server is not self.json:  # the JSON server is the default; only others are kept
            self._of[sid] = server

    def forget(self, sid: str) -> None:
        self._of.pop(sid, None)

    def of(self, sid: str) -> socketio.AsyncServer:
        return self._of.get(sid, self.json)

    def connected(self, sid: str, namespace: str) -> bool:
        """The socket is (still) connected to the namespace."""
        return bool(self.of(sid).manager.is_connected(sid, namespace))

    async def enter(self, sid: str, room: str, *, namespace: str) -> None:
        """Put a socket in a shared room, and return once this node hears the room's
        news from every node (the bus confirmed its subscription), so a join
        acknowledged after this misses nothing published after the ack."""
        try:
            await self.of(sid).enter_room(sid, room, namespace=namespace)
        except ValueError:
            return  # it disconnected while its join was on its way: nothing to enter
        if self.interest is not None:
            await self.interest.ready(namespace, room)
