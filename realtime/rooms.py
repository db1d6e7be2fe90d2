"""Every Socket.IO room name, in one place."""

from __future__ import annotations

__all__ = ["LIVE", "MAIN", "parse_channel", "project", "project_of", "room", "user"]

MAIN = "/"
LIVE = "/live"


def user(user_id: str) -> str:
    return f"user:{user_id}"


def room(room_id: str) -> str:
    return f"room:{room_id}"


def project(project_id: str) -> str:
    return f"project:{project_id}"


def project_of(room_name: str) -> str | None:
    """The project id of a project's room name, or None for any other room."""
    return room_name[8:] if room_name.startswith("project:") else None


_CHANNEL_NAMESPACES = {"user": MAIN, "room": MAIN, "project": LIVE}


def parse_channel(channel: str) -> tuple[str, str] | None:
    """``(namespace, room)`` for a public channel name, or None if it is not one."""
    kind, sep, ident = channel.partition(":")
    if not sep or not ident or len(ident) > 64 or kind not in _CHANNEL_NAMESPACES:
        return None
    return _CHANNEL_NAMESPACES[kind], channel
