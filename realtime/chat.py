"""The chat events on ``/``: parse, call the chat service, shape the ack."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.attachments import MAX_PER_MESSAGE
from services.chat import MAX_TEXT, ChatService
from services.errors import Invalid
from services.presence import PresenceService
from services.validation import Payload

__all__ = ["register"]


def register(door: SocketDoor, chat: ChatService, presence: PresenceService) -> None:
    async def connected(session: SocketSession) -> None:
        await presence.connected(session.sid, session.user_id)

    async def disconnected(session: SocketSession) -> None:
        await chat.disconnected(session.sid)

    async def join(session: SocketSession, payload: Payload) -> dict[str, Any]:
        return await chat.join(session.user_id, session.sid, payload.identifier("room_id"))

    async def leave(session: SocketSession, payload: Payload) -> None:
        await chat.left(session.user_id, session.sid, payload.identifier("room_id"))

    async def send(session: SocketSession, payload: Payload) -> dict[str, Any]:
        message = await chat.send(
            session.user_id,
            session.sid,
            room_id=payload.identifier("room_id"),
            client_msg_id=payload.string("client_msg_id", max_len=128),
            text=payload.string("text", max_len=MAX_TEXT),
            attachments=payload.id_list("attachments", max_items=MAX_PER_MESSAGE) or None,
        )
        return {"message": message.public()}

    async def edit(session: SocketSession, payload: Payload) -> dict[str, Any]:
        message = await chat.edit(
            session.user_id,
            session.sid,
            room_id=payload.identifier("room_id"),
            message_id=payload.identifier("message_id"),
            text=payload.string("text", max_len=MAX_TEXT),
            client_msg_id=payload.string("client_msg_id", max_len=128),
        )
        return {"message": message.public()}

    async def delete(session: SocketSession, payload: Payload) -> dict[str, Any]:
        message = await chat.delete(
            session.user_id,
            session.sid,
            room_id=payload.identifier("room_id"),
            message_id=payload.identifier("message_id"),
            client_msg_id=payload.string("client_msg_id", max_len=128),
        )
        return {"message": message.public()}

    async def typing(session: SocketSession, payload: Payload) -> None:
        await chat.typing(
            session.user_id, session.sid, payload.identifier("room_id"), payload.boolean("typing")
        )

    async def read(session: SocketSession, payload: Payload) -> None:
        await chat.read(
            session.user_id,
            session.sid,
            payload.identifier("room_id"),
            payload.integer("seq", minimum=0),
        )

    async def sync(session: SocketSession, payload: Payload) -> dict[str, Any]:
        return (await chat.sync(session.user_id, _last_seqs(payload))).public()

    async def client_state(session: SocketSession, payload: Payload) -> None:
        await presence.foreground(session.sid, payload.boolean("foreground"))

    door.on_connect(connected)
    door.on_disconnect(disconnected)
    door.on("chat:join", join)
    door.on("chat:leave", leave)
    door.on("chat:send", send)
    door.on("chat:edit", edit)
    door.on("chat:delete", delete)
    door.on("chat:typing", typing)
    door.on("chat:read", read)
    door.on("chat:sync", sync)
    door.on("client:state", client_state)


def _last_seqs(payload: Payload) -> dict[str, int]:
    """``{room_id: last_seq}``, every key an id and every value a seq >= 0."""
    rooms = payload.mapping("rooms")
    wanted: dict[str, int] = {}
    for room_id in rooms:
        if not 1 <= len(room_id) <= 64:
            raise Invalid("rooms keys must be room ids")
        wanted[room_id] = rooms.integer(room_id, minimum=0)
    return wanted
