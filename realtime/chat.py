"""The chat events on ``/``: parse, call the chat service, shape the ack."""

from __future__ import annotations

from typing import Any

from realtime.doors import SocketDoor
from realtime.sessions import SocketSession
from services.chat import ChatService
from services.presence import PresenceService
from services.wire import sockets as wire

__all__ = ["register"]


def register(door: SocketDoor, chat: ChatService, presence: PresenceService) -> None:
    async def connected(session: SocketSession) -> None:
        await presence.connected(session.sid, session.user_id)

    async def disconnected(session: SocketSession) -> None:
        await chat.disconnected(session.sid)

    async def join(session: SocketSession, payload: wire.RoomRef) -> dict[str, Any]:
        return await chat.join(session.user_id, session.sid, payload.room_id)

    async def leave(session: SocketSession, payload: wire.RoomRef) -> None:
        await chat.left(session.user_id, session.sid, payload.room_id)

    async def send(session: SocketSession, payload: wire.ChatSend) -> dict[str, Any]:
        message = await chat.send(
            session.user_id,
            session.sid,
            room_id=payload.room_id,
            client_msg_id=payload.client_msg_id,
            text=payload.text,
            attachments=payload.attachments or None,
        )
        return {"message": message.public()}

    async def edit(session: SocketSession, payload: wire.ChatEdit) -> dict[str, Any]:
        message = await chat.edit(
            session.user_id,
            session.sid,
            room_id=payload.room_id,
            message_id=payload.message_id,
            text=payload.text,
            client_msg_id=payload.client_msg_id,
        )
        return {"message": message.public()}

    async def delete(session: SocketSession, payload: wire.ChatDelete) -> dict[str, Any]:
        message = await chat.delete(
            session.user_id,
            session.sid,
            room_id=payload.room_id,
            message_id=payload.message_id,
            client_msg_id=payload.client_msg_id,
        )
        return {"message": message.public()}

    async def typing(session: SocketSession, payload: wire.Typing) -> None:
        await chat.typing(session.user_id, session.sid, payload.room_id, payload.typing)

    async def read(session: SocketSession, payload: wire.ReadMarker) -> None:
        await chat.read(session.user_id, session.sid, payload.room_id, payload.seq)

    async def sync(session: SocketSession, payload: wire.Sync) -> dict[str, Any]:
        return (await chat.sync(session.user_id, dict(payload.rooms))).public()

    async def client_state(session: SocketSession, payload: wire.ClientState) -> None:
        await presence.foreground(session.sid, payload.foreground)

    door.on_connect(connected)
    door.on_disconnect(disconnected)
    door.on(
        "chat:join",
        join,
        payload=wire.RoomRef,
        ack=wire.Joined,
        summary="Join a room to receive its events; presence online goes to the room.",
    )
    door.on(
        "chat:leave",
        leave,
        payload=wire.RoomRef,
        ack=wire.Empty,
        summary="Stop receiving a room's events (a room that is not the caller's: forbidden).",
    )
    door.on(
        "chat:send",
        send,
        payload=wire.ChatSend,
        ack=wire.MessageAck,
        summary="Send a message: stored before the ack, then chat:message to the room. "
        "Idempotent on client_msg_id for 24 h: a retry answers the first message.",
    )
    door.on(
        "chat:edit",
        edit,
        payload=wire.ChatEdit,
        ack=wire.MessageAck,
        summary="Edit a message of the caller's: an edit event with the room's next seq.",
    )
    door.on(
        "chat:delete",
        delete,
        payload=wire.ChatDelete,
        ack=wire.MessageAck,
        summary="Delete a message (its sender; admins may delete any): a delete event.",
    )
    door.on(
        "chat:typing",
        typing,
        payload=wire.Typing,
        ack=wire.Empty,
        summary="Typing or not; repeats of the same state are thinned, a change always goes.",
    )
    door.on(
        "chat:read",
        read,
        payload=wire.ReadMarker,
        ack=wire.Empty,
        summary="Move the caller's read marker forward (it never moves back).",
    )
    door.on(
        "chat:sync",
        sync,
        payload=wire.Sync,
        ack=wire.Synced,
        summary="Everything after the seqs the client has, at most 500 a room: the "
        "reconnect recipe (sync, then join).",
    )
    door.on(
        "client:state",
        client_state,
        payload=wire.ClientState,
        ack=wire.Empty,
        summary="The app went to the background or came back: with every socket in the "
        "background, chat and notifications go by push too.",
    )
