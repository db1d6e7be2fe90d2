"""Which bus channels this node needs: one per shared room its sockets are in.

python-socketio's room manager (realtime/manager.py) reports every socket that
enters or leaves a user's, a chat room's or a project's room; the bus counts
the references and listens to a channel while any is held. Entering is
synchronous (python-socketio's manager is), so a join that must miss nothing
awaits ``ready`` before it is acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable

from storage.bus import PeerBus

__all__ = ["Interest", "interest_key"]

_SHARED = ("user:", "room:", "project:")


def interest_key(namespace: str, room: object) -> str | None:
    """The bus key of a shared room (None for a socket's own room and the rest)."""
    if isinstance(room, str) and room.startswith(_SHARED):
        return namespace + "#" + room
    return None


class Interest:
    def __init__(self, bus: PeerBus) -> None:
        self._bus = bus
        self._dropped: list[Callable[[str, str], None]] = []

    def on_dropped(self, callback: Callable[[str, str], None]) -> None:
        """``callback(namespace, room)`` when this node's last socket left a shared
        room: from then on the node no longer hears that room's news."""
        self._dropped.append(callback)

    def entered(self, namespace: str, room: object) -> None:
        key = interest_key(namespace, room)
        if key is not None:
            self._bus.want(key)

    def left(self, namespace: str, room: object) -> None:
        key = interest_key(namespace, room)
        if key is not None and self._bus.unwant(key):
            for callback in self._dropped:
                callback(namespace, str(room))

    async def ready(self, namespace: str, room: str) -> None:
        key = interest_key(namespace, room)
        if key is not None:
            await self._bus.settled(key)
