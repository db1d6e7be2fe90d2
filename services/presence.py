"""Presence: which users have a socket in a room, or at all, on any node.

This node's sockets keep their entries alive in the ``PresenceStore`` by a
heartbeat; a node that dies leaves entries that expire, and every node sweeps
expired ones, announcing ``offline`` for the users that had no other socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from services.clock import Clock
from services.ports import Fanout
from storage.presence import Entry, PresenceStore

__all__ = ["PresenceService"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_ONLINE = "online"
# A socket whose app is in the foreground (``client:state``); sockets start there.
_AWAKE = "awake"
_ROOM = "room:"


class PresenceService:
    def __init__(
        self,
        store: PresenceStore,
        fanout: Fanout,
        *,
        clock: Clock,
        ttl_s: float,
        on_error: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._clock = clock
        self._ttl_s = ttl_s
        self._on_error = on_error
        # This node's sockets: sid -> (user id, scopes it is present in).
        self._local: dict[str, tuple[str, set[str]]] = {}

    def _expiry(self) -> float:
        return self._clock.now() + self._ttl_s

    # -- sockets of this node ---------------------------------------------------------------

    async def connected(self, sid: str, user_id: str) -> None:
        self._local[sid] = (user_id, {_ONLINE, _AWAKE})
        # Presence is best effort: a store outage must not refuse sockets. The
        # heartbeat writes the entry once the store answers again.
        await self._tolerate(
            self._store.add([(_ONLINE, user_id, sid), (_AWAKE, user_id, sid)], self._expiry())
        )

    async def foreground(self, sid: str, awake: bool) -> None:
        """The app of this socket went to the foreground (True) or the background."""
        local = self._local.get(sid)
        if local is None or (_AWAKE in local[1]) == awake:
            return
        user_id, scopes = local
        if awake:
            scopes.add(_AWAKE)
            await self._tolerate(self._store.add([(_AWAKE, user_id, sid)], self._expiry()))
        else:
            scopes.discard(_AWAKE)
            await self._tolerate(self._store.remove([(_AWAKE, user_id, sid)]))

    async def joined(self, sid: str, user_id: str, room_id: str) -> list[str]:
        """Mark the socket present in the room; the users present there now."""
        local = self._local.get(sid)
        if local is None:  # disconnected meanwhile
            return await self._store.users(_ROOM + room_id)
        local[1].add(_ROOM + room_id)
        await self._tolerate(self._store.add([(_ROOM + room_id, user_id, sid)], self._expiry()))
        await self._fanout.to_room(
            room_id, "presence", _event(room_id, user_id, "online"), skip_sid=sid
        )
        users = await self._tolerate(self._store.users(_ROOM + room_id))
        if users is None:  # the store is down: at least this node's own knowledge
            users = sorted({u for u, scopes in self._local.values() if _ROOM + room_id in scopes})
        return users

    def has_joined(self, sid: str, room_id: str) -> bool:
        local = self._local.get(sid)
        return local is not None and _ROOM + room_id in local[1]

    async def left(self, sid: str, room_id: str) -> None:
        local = self._local.get(sid)
        if local is None or _ROOM + room_id not in local[1]:
            return
        local[1].discard(_ROOM + room_id)
        gone = await self._tolerate(self._store.remove([(_ROOM + room_id, local[0], sid)]))
        await self._announce(gone or [])

    async def disconnected(self, sid: str) -> None:
        local = self._local.pop(sid, None)
        if local is None:
            return
        user_id, scopes = local
        gone = await self._tolerate(self._store.remove([(s, user_id, sid) for s in scopes]))
        await self._announce(gone or [])

    # -- questions --------------------------------------------------------------------------

    async def socket_count(self, user_id: str) -> int:
        """The user's connected sockets on every node (0 when the store is down)."""
        return await self._tolerate(self._store.count(_ONLINE, user_id)) or 0

    async def connected_among(self, user_ids: Iterable[str]) -> set[str]:
        """Those of these users with a socket on any node (when unsure: nobody, so a
        push goes out rather than nothing)."""
        return await self._tolerate(self._store.present(_ONLINE, user_ids)) or set()

    async def awake_among(self, user_ids: Iterable[str]) -> set[str]:
        """Those of these users with a socket in the foreground on any node: whoever
        is not among them is owed a push as if they had no socket."""
        return await self._tolerate(self._store.present(_AWAKE, user_ids)) or set()

    # -- upkeep -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Refresh this node's entries and sweep everyone's expired ones, until cancelled."""
        tick = min(1.0, self._ttl_s / 4)
        refresh_every = self._ttl_s / 3
        last_refresh = self._clock.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                if self._clock.monotonic() - last_refresh >= refresh_every:
                    last_refresh = self._clock.monotonic()
                    await self.refresh()
                await self.sweep()
            except Exception:
                self._on_error("presence")
                log.warning("presence upkeep failed; retrying", exc_info=True)

    async def refresh(self) -> None:
        entries: list[Entry] = [
            (scope, user_id, sid)
            for sid, (user_id, scopes) in list(self._local.items())
            for scope in scopes
        ]
        if entries:
            await self._store.add(entries, self._expiry())

    async def sweep(self) -> None:
        await self._announce(await self._store.sweep(self._clock.now()))

    async def _announce(self, gone: list[tuple[str, str]]) -> None:
        for scope, user_id in gone:
            if scope.startswith(_ROOM):
                room_id = scope[len(_ROOM) :]
                await self._fanout.to_room(room_id, "presence", _event(room_id, user_id, "offline"))

    async def _tolerate(self, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except Exception:
            self._on_error("presence")
            log.warning("presence store unreachable", exc_info=True)
            return None

    async def stop(self) -> None:
        """Leave every room this node's sockets were in (a graceful shutdown)."""
        for sid in list(self._local):
            with contextlib.suppress(Exception):
                await self.disconnected(sid)


def _event(room_id: str, user_id: str, status: str) -> dict[str, str]:
    return {"room_id": room_id, "user_id": user_id, "status": status}
