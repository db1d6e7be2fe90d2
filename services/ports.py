"""What services need from the outside, as protocols.

Services write first, then hand what happened to these ports; realtime/ and
integrations/ implement them. Services never import python-socketio.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

__all__ = [
    "AccountBlocks",
    "Fanout",
    "Receipt",
    "ReceiptHandler",
    "SessionTerminator",
    "SocketRooms",
]


# (kind, key): which handler an ack goes to, and what it is an ack of (an alert id).
Receipt = tuple[str, str]
ReceiptHandler = Callable[[str, str], Awaitable[None]]


class Fanout(Protocol):
    """The one fan-out path to connected sockets, on every node."""

    async def to_user(
        self, user_id: str, event: str, data: Any, *, skip_sid: str | None = None
    ) -> None: ...

    async def to_users(
        self, user_ids: Iterable[str], event: str, data: Any, *, skip_sid: str | None = None
    ) -> None: ...

    async def to_room(
        self,
        room_id: str,
        event: str,
        data: Any,
        *,
        skip_sid: str | None = None,
        version: int | None = None,
    ) -> None: ...

    async def to_project(self, project_id: str, event: str, data: Any) -> None: ...

    async def to_channel(self, channel: str, event: str, data: Any) -> None:
        """A raw channel name (``user:<id>``, ``room:<id>``, ``project:<id>``)."""
        ...

    async def ask_users(
        self, user_ids: Iterable[str], event: str, data: Any, *, receipt: Receipt
    ) -> None:
        """Emit to every socket of these users, on every node, asking each for an ack;
        an ack calls the handler of ``receipt[0]`` with ``receipt[1]`` and the user id,
        on the node that holds the socket."""
        ...

    async def ask_socket(self, sid: str, event: str, data: Any, *, receipt: Receipt) -> None:
        """The same for one socket of this node."""
        ...


class SessionTerminator(Protocol):
    async def end_sessions(
        self, *, jti: str | None = None, family_id: str | None = None, user_id: str | None = None
    ) -> None:
        """Disconnect, on every node, the sockets authenticated with these tokens (or
        every socket of that user)."""
        ...


class AccountBlocks(Protocol):
    async def blocked(self, user_id: str, *, blocked: bool) -> None:
        """After a block is committed: end every session and socket of the user (or, for
        an unblock, let them sign in again)."""
        ...


class SocketRooms(Protocol):
    """Which rooms a socket of this node listens to."""

    async def join_room(self, sid: str, room_id: str) -> None: ...

    async def leave_room(self, sid: str, room_id: str) -> None: ...

    async def join_project(self, sid: str, project_id: str) -> None:
        """A ``/live`` socket starts receiving a project's donations."""
        ...

    async def leave_project(self, sid: str, project_id: str) -> None: ...

    def on_project_news(self, callback: Callable[[str], None]) -> None:
        """``callback(project_id)`` whenever news of a project reaches this node."""
        ...
