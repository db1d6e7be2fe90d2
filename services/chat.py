"""Chat: rooms, messages with a gapless seq, read markers, typing and resync.

The rules of chat live here: who may read and write a room, the limits, and
the order "store, then ack, then fan out, then push to whoever has no socket".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.clock import Clock
from services.errors import Forbidden, Invalid, RateLimited
from services.ports import Fanout, SocketRooms
from services.presence import PresenceService
from storage.db import Database
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.events import Outbox
from storage.messages import MessageRecord, MessageRepository
from storage.rooms import RoomRecord, RoomRepository, as_uuid
from storage.state import EphemeralState

__all__ = ["ChatLimits", "ChatService", "SyncResult"]

MAX_TEXT = 4000
MAX_GROUP_MEMBERS = 500
SYNC_PER_ROOM = 500
SYNC_MAX_ROOMS = 1000
HISTORY_DEFAULT = 50
HISTORY_MAX = 200
_PUSH_PREVIEW = 140
_NOT_A_MEMBER = "you are not a member of this room"


@dataclass(frozen=True, slots=True)
class ChatLimits:
    send_per_window: int = 20
    send_window_s: float = 10.0
    typing_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class SyncResult:
    messages: dict[str, list[MessageRecord]]
    more: list[str]
    denied: list[str]

    def public(self) -> dict[str, Any]:
        return {
            "messages": {r: [m.public() for m in ms] for r, ms in self.messages.items()},
            "more": self.more,
            "denied": self.denied,
        }


class ChatService:
    def __init__(
        self,
        *,
        db: Database,
        rooms: RoomRepository,
        messages: MessageRepository,
        deliveries: DeliveryRepository,
        outbox: Outbox,
        presence: PresenceService,
        fanout: Fanout,
        sockets: SocketRooms,
        kick_deliveries: Callable[[], None],
        state: EphemeralState,
        clock: Clock,
        limits: ChatLimits,
    ) -> None:
        self._db = db
        self._rooms = rooms
        self._messages = messages
        self._deliveries = deliveries
        self._outbox = outbox
        self._presence = presence
        self._fanout = fanout
        self._sockets = sockets
        self._kick = kick_deliveries
        self._state = state
        self._clock = clock
        self._limits = limits
        # Members never change once a room exists, so each node keeps the lists it needs.
        self._members: OrderedDict[str, list[str]] = OrderedDict()
        # (sid, room id) -> when that socket last had a typing event broadcast.
        self._typing_at: dict[tuple[str, str], float] = {}

    # -- rooms (REST) -----------------------------------------------------------------------

    async def create_room(
        self, user_id: str, *, kind: str, member_ids: list[str], title: str | None
    ) -> tuple[RoomRecord, bool]:
        others: list[str] = []
        for raw in member_ids:
            member = as_uuid(raw)
            if member is None:
                raise Invalid(f"unknown user id: {raw}")
            if member != user_id and member not in others:
                others.append(member)
        if kind == "direct":
            if len(others) != 1:
                raise Invalid("a direct room has exactly one other member")
            title = None
            direct_key = ":".join(sorted([user_id, others[0]]))
        else:
            if title is None:
                raise Invalid("a group room needs a title")
            if len(others) + 1 > MAX_GROUP_MEMBERS:
                raise Invalid(f"a group room has at most {MAX_GROUP_MEMBERS} members")
            direct_key = None
        unknown = set(others) - await self._rooms.existing_users(others)
        if unknown:
            raise Invalid("unknown user ids: " + ", ".join(sorted(unknown)))
        async with self._db.transaction() as conn:
            return await self._rooms.create(
                conn,
                kind=kind,
                title=title,
                creator_id=user_id,
                member_ids=others,
                direct_key=direct_key,
            )

    async def rooms_of(self, user_id: str) -> list[RoomRecord]:
        return await self._rooms.for_member(user_id)

    async def room(self, user_id: str, room_id: str) -> RoomRecord:
        return await self._readable(user_id, room_id)

    async def history(
        self, user_id: str, room_id: str, *, before_seq: int | None, limit: int | None
    ) -> list[MessageRecord]:
        if limit is not None and limit < 1:
            raise Invalid("limit must be at least 1")
        limit = min(limit or HISTORY_DEFAULT, HISTORY_MAX)
        await self._member_or_forbidden(user_id, room_id)
        return await self._messages.before(room_id, before_seq=before_seq, limit=limit)

    # -- sockets ----------------------------------------------------------------------------

    async def join(self, user_id: str, sid: str, room_id: str) -> dict[str, Any]:
        room = await self._readable(user_id, room_id)
        await self._sockets.join_room(sid, room.id)
        online = await self._presence.joined(sid, user_id, room.id)
        return {"room": room.public(), "online_user_ids": online}

    async def leave(self, sid: str, room_id: str) -> None:
        room = as_uuid(room_id)
        if room is None:
            return
        await self._sockets.leave_room(sid, room)
        self._typing_at.pop((sid, room), None)
        await self._presence.left(sid, room)

    async def send(
        self, user_id: str, sid: str, *, room_id: str, client_msg_id: str, text: str
    ) -> MessageRecord:
        room = as_uuid(room_id)
        if room is None:
            raise Forbidden(_NOT_A_MEMBER)
        if not text or len(text) > MAX_TEXT:
            raise Invalid(f"text must be 1 to {MAX_TEXT} characters")
        count, retry_after = await self._state.incr(
            f"chat-send:{user_id}", self._limits.send_window_s
        )
        if count > self._limits.send_per_window:
            raise RateLimited(
                f"at most {self._limits.send_per_window} messages per "
                f"{self._limits.send_window_s:g} s",
                retry_after=retry_after,
            )
        # Who has no socket anywhere is read before the transaction: what the
        # message owes them commits with it, or neither does.
        absent = await self._absent_members(room, user_id)
        async with self._db.transaction() as conn:
            stored = await self._messages.send(
                conn, room_id=room, sender_id=user_id, client_msg_id=client_msg_id, text=text
            )
            if stored is None:
                raise Forbidden(_NOT_A_MEMBER)
            message, created = stored
            if created:
                now = message.created_at.timestamp()
                await self._deliveries.enqueue(conn, self._pushes(message, absent), now=now)
                await self._outbox.add(
                    conn,
                    "chat.message_sent",
                    {
                        "message_id": message.id,
                        "room_id": room,
                        "seq": message.seq,
                        "sender_id": user_id,
                    },
                    key=room,
                    now=now,
                )
        if created:
            if absent:
                self._kick()
            await self._fanout.to_room(
                room, "chat:message", {"message": message.public()}, skip_sid=sid
            )
        return message

    async def typing(self, user_id: str, sid: str, room_id: str, typing: bool) -> None:
        room = await self._member_or_forbidden(user_id, room_id, sid=sid)
        now = self._clock.monotonic()
        last = self._typing_at.get((sid, room))
        if last is not None and now - last < self._limits.typing_interval_s:
            return  # extra typing events within the interval are dropped silently
        self._typing_at[(sid, room)] = now
        await self._fanout.to_room(
            room,
            "chat:typing",
            {"room_id": room, "user_id": user_id, "typing": typing},
            skip_sid=sid,
        )

    async def read(self, user_id: str, sid: str, room_id: str, seq: int) -> None:
        room = as_uuid(room_id)
        result = None if room is None else await self._rooms.mark_read(self._db, room, user_id, seq)
        if room is None or result is None:
            raise Forbidden(_NOT_A_MEMBER)
        moved, last_seq = result
        if seq > last_seq:
            raise Invalid(f"seq {seq} is beyond the room's last message ({last_seq})")
        if moved:
            await self._fanout.to_room(
                room, "chat:read", {"room_id": room, "user_id": user_id, "seq": seq}, skip_sid=sid
            )

    async def sync(self, user_id: str, wanted: dict[str, int]) -> SyncResult:
        if len(wanted) > SYNC_MAX_ROOMS:
            raise Invalid(f"at most {SYNC_MAX_ROOMS} rooms per sync")
        canonical = {raw: as_uuid(raw) for raw in wanted}
        valid = [c for c in canonical.values() if c is not None]
        allowed = await self._rooms.member_rooms(user_id, valid) if valid else set()
        readable = {c: wanted[raw] for raw, c in canonical.items() if c in allowed}
        denied = [raw for raw, c in canonical.items() if c not in allowed]
        found = await self._messages.after(readable, limit=SYNC_PER_ROOM + 1)
        more = [r for r, ms in found.items() if len(ms) > SYNC_PER_ROOM]
        messages = {r: ms[:SYNC_PER_ROOM] for r, ms in found.items()}
        return SyncResult(messages=messages, more=more, denied=denied)

    async def disconnected(self, sid: str) -> None:
        for key in [k for k in self._typing_at if k[0] == sid]:
            del self._typing_at[key]
        await self._presence.disconnected(sid)

    # -- helpers ----------------------------------------------------------------------------

    async def _readable(self, user_id: str, room_id: str) -> RoomRecord:
        room_uuid = as_uuid(room_id)
        room = None if room_uuid is None else await self._rooms.get(room_uuid)
        if room is None or user_id not in room.member_ids:
            raise Forbidden(_NOT_A_MEMBER)
        return room

    async def _member_or_forbidden(self, user_id: str, room_id: str, *, sid: str = "") -> str:
        room = as_uuid(room_id)
        if room is None:
            raise Forbidden(_NOT_A_MEMBER)
        if sid and self._presence.has_joined(sid, room):
            return room  # joining checked membership, and members are never removed
        if not await self._rooms.is_member(room, user_id):
            raise Forbidden(_NOT_A_MEMBER)
        return room

    async def _member_ids(self, room_id: str) -> list[str]:
        members = self._members.get(room_id)
        if members is None:
            members = await self._rooms.member_ids(room_id)
            self._members[room_id] = members
            if len(self._members) > 10_000:
                self._members.popitem(last=False)
        else:
            self._members.move_to_end(room_id)
        return members

    async def _absent_members(self, room_id: str, sender_id: str) -> list[str]:
        """Members other than the sender with no socket in the foreground anywhere: a
        phone whose app is in the background may not show a socket's message."""
        members = await self._member_ids(room_id)
        if sender_id not in members:
            return []  # chat_send refuses a non-member; nothing is owed
        others = [m for m in members if m != sender_id]
        awake = await self._presence.awake_among(others)
        return [m for m in others if m not in awake]

    @staticmethod
    def _pushes(message: MessageRecord, absent: list[str]) -> list[NewDelivery]:
        text = message.text
        preview = text if len(text) <= _PUSH_PREVIEW else text[: _PUSH_PREVIEW - 1] + "…"
        return [
            NewDelivery(
                source="chat",
                source_id=message.id,
                channel="push",
                user_id=member,
                kind="chat_message",
                title="New message",
                body=preview,
                data={"room_id": message.room_id, "message_id": message.id, "seq": message.seq},
            )
            for member in absent
        ]
