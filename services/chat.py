"""Chat: rooms, messages with a gapless seq, read markers, typing and resync.

The rules of chat live here: who may read and write a room, the limits, and
the order "store, then ack, then fan out, then push to whoever has no socket".
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from services.attachments import AttachmentService
from services.clock import Clock
from services.errors import Forbidden, Invalid, NotFound, RateLimited
from services.ports import Fanout, SocketRooms
from services.presence import PresenceService
from storage.archive import History
from storage.db import Database, Queryable
from storage.deliveries import DeliveryRepository, NewDelivery
from storage.events import Outbox
from storage.messages import MessageRecord, MessageRepository, archived_message
from storage.rooms import RoomRecord, RoomRepository, as_uuid
from storage.state import EphemeralState

__all__ = ["ChatLimits", "ChatService", "SyncResult"]

MAX_TEXT = 4000
MAX_GROUP_MEMBERS = 500
SYNC_PER_ROOM = 500
SYNC_MAX_ROOMS = 1000
HISTORY_DEFAULT = 50
HISTORY_MAX = 200
SEARCH_DEFAULT = 20
SEARCH_MAX = 100
_PUSH_PREVIEW = 140
_NOT_A_MEMBER = "you are not a member of this room"
_MANAGERS = ("owner", "admin")
_EVERYONE = ("owner", "admin", "member")


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
        attachments: AttachmentService,
        archive: History,
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
        self._attachments = attachments
        self._archive = archive
        self._kick = kick_deliveries
        self._state = state
        self._clock = clock
        self._limits = limits
        # room id -> (members_version, members): each node's cache, refreshed whenever a
        # message or event says the room's members changed since.
        self._members: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        # (sid, room id) -> when that socket last had a typing event broadcast.
        # (sid, room id) -> when that socket last had a typing event broadcast, and which.
        self._typing_at: dict[tuple[str, str], tuple[float, bool]] = {}

    # -- rooms (REST) -----------------------------------------------------------------------

    async def create_room(
        self, user_id: str, *, kind: str, member_ids: list[str], title: str | None
    ) -> tuple[RoomRecord, bool]:
        others: list[str] = []
        for raw in member_ids:
            member = as_uuid(raw)
            if member is None:
                raise NotFound(f"no such user: {raw}")
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
            raise NotFound("no such users: " + ", ".join(sorted(unknown)))
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
        room = as_uuid(room_id)
        membership = None if room is None else await self._rooms.membership(room, user_id)
        if room is None or membership is None:
            raise Forbidden(_NOT_A_MEMBER)
        from_seq = membership[1]
        found = await self._messages.before(
            room, before_seq=before_seq, limit=limit, from_seq=from_seq
        )
        oldest = found[-1].seq if found else before_seq
        if len(found) < limit and (oldest is None or oldest > from_seq):
            # Paging past the hot tier continues into the archive, in the same order.
            older = await self._archive.messages_before(
                room, before_seq=oldest, from_seq=from_seq, limit=limit - len(found)
            )
            found += [archived_message(d) for d in older]
        return await self._with_attachments(found)

    # -- rooms that change (REST) -----------------------------------------------------------

    async def add_members(self, actor: str, room_id: str, user_ids: list[str]) -> RoomRecord:
        wanted = [as_uuid(u) for u in user_ids]
        if not wanted or any(u is None for u in wanted):
            raise Invalid("user_ids must be 1 or more user ids")
        ids = list(dict.fromkeys(u for u in wanted if u is not None))
        unknown = set(ids) - await self._rooms.existing_users(ids)
        if unknown:
            raise NotFound("no such users: " + ", ".join(sorted(unknown)))
        async with self._db.transaction() as conn:
            room = await self._locked_group(conn, room_id, actor, need=_MANAGERS)
            new = [u for u in ids if u not in await self._rooms.members_among(conn, room, ids)]
            if not new:
                events: list[MessageRecord] = []
            else:
                count = len((await self._rooms.member_ids(room))[1])
                if count + len(new) > MAX_GROUP_MEMBERS:
                    raise Invalid(f"a group room has at most {MAX_GROUP_MEMBERS} members")
                seq, version = await self._rooms.next_seq(conn, room, members_changed=True)
                await self._rooms.add_members(conn, room, new, from_seq=seq)
                events = [
                    await self._event(conn, room, seq, actor, "member_added", {"user_ids": new})
                ]
        await self._announce(room, events, version if events else None)
        return await self._readable(actor, room)

    async def remove_member(self, actor: str, room_id: str, user_id: str) -> None:
        """Remove a member (owner or admin), or leave (anyone, for themselves)."""
        target = as_uuid(user_id)
        async with self._db.transaction() as conn:
            room = await self._locked_group(
                conn, room_id, actor, need=_EVERYONE if target == actor else _MANAGERS
            )
            role = None if target is None else await self._rooms.role(conn, room, target)
            if target is None or role is None:
                raise NotFound("that user is not a member of this room")
            if role == "owner" and target != actor:
                raise Forbidden("the owner can only leave, not be removed")
            seq, version = await self._rooms.next_seq(conn, room, members_changed=True)
            await self._rooms.remove_member(conn, room, target)
            events = [
                await self._event(conn, room, seq, actor, "member_removed", {"user_ids": [target]})
            ]
            if role == "owner":  # ownership passes on, as the next event of the room
                heir = await self._rooms.successor(conn, room)
                if heir is not None:
                    seq, version = await self._rooms.next_seq(conn, room, members_changed=True)
                    await self._rooms.set_role(conn, room, heir, "owner")
                    events.append(
                        await self._event(
                            conn,
                            room,
                            seq,
                            actor,
                            "role_changed",
                            {"user_id": heir, "role": "owner"},
                        )
                    )
        # The removed member hears their removal, then leaves the room on every node
        # before anything written after it is fanned out (the versioned room guard).
        await self._fanout.to_user(target, "chat:message", {"message": events[0].public()})
        await self._fanout.to_user(target, "room:removed", {"room_id": room})
        await self._announce(room, events, version)

    async def set_role(self, actor: str, room_id: str, user_id: str, role: str) -> RoomRecord:
        if role not in ("admin", "member"):
            raise Invalid("role must be admin or member (a room has one owner)")
        target = as_uuid(user_id)
        async with self._db.transaction() as conn:
            room = await self._locked_group(conn, room_id, actor, need=("owner",))
            current = None if target is None else await self._rooms.role(conn, room, target)
            if target is None or current is None:
                raise NotFound("that user is not a member of this room")
            if current == "owner":
                raise Invalid("the owner's role does not change; the owner can leave")
            events: list[MessageRecord] = []
            version = None
            if current != role:
                seq, version = await self._rooms.next_seq(conn, room, members_changed=True)
                await self._rooms.set_role(conn, room, target, role)
                events.append(
                    await self._event(
                        conn, room, seq, actor, "role_changed", {"user_id": target, "role": role}
                    )
                )
        await self._announce(room, events, version)
        return await self._readable(actor, room)

    async def set_title(self, actor: str, room_id: str, title: str) -> RoomRecord:
        async with self._db.transaction() as conn:
            room = await self._locked_group(conn, room_id, actor, need=_MANAGERS)
            seq, version = await self._rooms.next_seq(conn, room, members_changed=False)
            await self._rooms.set_title(conn, room, title)
            event = await self._event(conn, room, seq, actor, "title_changed", {"title": title})
        await self._announce(room, [event], version)
        return await self._readable(actor, room)

    # -- edits and deletes (sockets) --------------------------------------------------------

    async def edit(
        self,
        user_id: str,
        sid: str,
        *,
        room_id: str,
        message_id: str,
        text: str,
        client_msg_id: str,
    ) -> MessageRecord:
        if not text or len(text) > MAX_TEXT:
            raise Invalid(f"text must be 1 to {MAX_TEXT} characters")
        return await self._change(user_id, sid, room_id, message_id, client_msg_id, text=text)

    async def delete(
        self, user_id: str, sid: str, *, room_id: str, message_id: str, client_msg_id: str
    ) -> MessageRecord:
        return await self._change(user_id, sid, room_id, message_id, client_msg_id, text=None)

    async def _change(
        self,
        user_id: str,
        sid: str,
        room_id: str,
        message_id: str,
        client_msg_id: str,
        *,
        text: str | None,
    ) -> MessageRecord:
        """An edit (``text``) or a delete (None) of a message, as the room's next event."""
        room = as_uuid(room_id)
        target_id = as_uuid(message_id)
        if room is None:
            raise Forbidden(_NOT_A_MEMBER)
        async with self._db.transaction() as conn:
            if await self._rooms.lock(conn, room) is None:
                raise Forbidden(_NOT_A_MEMBER)
            role = await self._rooms.role(conn, room, user_id)
            if role is None:
                raise Forbidden(_NOT_A_MEMBER)
            first = await self._messages.by_client_id(conn, room, user_id, client_msg_id)
            if first is not None:
                return first  # a retry: the first result, nothing new broadcast
            target = None if target_id is None else await self._messages.get(conn, room, target_id)
            if target is None or target.kind != "text" or target.deleted:
                raise NotFound("no such message in this room")
            if text is not None and target.sender_id != user_id:
                raise Forbidden("only the sender edits a message")
            if text is None and target.sender_id != user_id and role not in _MANAGERS:
                raise Forbidden("only the sender or an admin deletes a message")
            seq, version = await self._rooms.next_seq(conn, room, members_changed=False)
            event = await self._messages.insert_event(
                conn,
                room_id=room,
                seq=seq,
                sender_id=user_id,
                client_msg_id=client_msg_id,
                kind="edit" if text is not None else "delete",
                text=text or "",
                target_id=target.id,
            )
            if text is not None:
                await self._messages.edit(conn, target.id, text, at=event.created_at)
            else:
                await self._messages.delete(conn, target.id)
        await self._fanout.to_room(
            room, "chat:message", {"message": event.public()}, skip_sid=sid, version=version
        )
        return event

    async def _locked_group(
        self, conn: Queryable, room_id: str, actor: str, *, need: tuple[str, ...]
    ) -> str:
        """Lock a group room the actor may change; forbidden for non-members."""
        room = as_uuid(room_id)
        locked = None if room is None else await self._rooms.lock(conn, room)
        role = None if room is None else await self._rooms.role(conn, room, actor)
        if room is None or locked is None or role is None:
            raise Forbidden(_NOT_A_MEMBER)
        if locked[0] != "group":
            raise Invalid("a direct room's members and title never change")
        if role not in need:
            raise Forbidden("only the room's " + " or ".join(need) + " may do this")
        return room

    async def _event(
        self,
        conn: Queryable,
        room_id: str,
        seq: int,
        actor: str,
        kind: str,
        data: dict[str, Any],
    ) -> MessageRecord:
        return await self._messages.insert_event(
            conn,
            room_id=room_id,
            seq=seq,
            sender_id=actor,
            client_msg_id=f"{kind}:{uuid.uuid4()}",
            kind=kind,
            data=data,
        )

    async def _announce(
        self, room_id: str, events: list[MessageRecord], version: int | None
    ) -> None:
        for event in events:
            await self._fanout.to_room(
                room_id, "chat:message", {"message": event.public()}, version=version
            )

    async def _sync_from_archive(
        self, readable: dict[str, int], found: dict[str, list[MessageRecord]]
    ) -> None:
        """Where the hot tier starts past a room's given seq, the archive fills the gap."""
        last_seqs = await self._rooms.last_seqs(list(readable))
        for room, after in readable.items():
            hot = found.get(room, [])
            gap = hot[0].seq > after + 1 if hot else after < last_seqs.get(room, 0)
            if not gap:
                continue
            older = await self._archive.messages_between(
                room,
                after_seq=after,
                before_seq=hot[0].seq if hot else None,
                limit=SYNC_PER_ROOM + 1,
            )
            found[room] = [archived_message(d) for d in older] + hot

    async def _with_attachments(self, messages: list[MessageRecord]) -> list[MessageRecord]:
        """The messages with their attachments' fresh signed links (one query a page)."""
        texts = [m.id for m in messages if m.kind == "text" and not m.deleted]
        links = await self._attachments.of_messages(texts) if texts else {}
        if not links:
            return messages
        return [replace(m, attachments=links[m.id]) if m.id in links else m for m in messages]

    # -- search -----------------------------------------------------------------------------

    async def search(
        self, user_id: str, query: str, *, room_id: str | None, limit: int | None
    ) -> list[dict[str, Any]]:
        query = query.strip()
        if not 1 <= len(query) <= 200:
            raise Invalid("q must be 1 to 200 characters")
        if limit is not None and limit < 1:
            raise Invalid("limit must be at least 1")
        room = None
        if room_id is not None:
            room = as_uuid(room_id)
            if room is None or await self._rooms.membership(room, user_id) is None:
                raise Forbidden(_NOT_A_MEMBER)
        found = await self._messages.search(
            user_id, query, room_id=room, limit=min(limit or SEARCH_DEFAULT, SEARCH_MAX)
        )
        return [{**m.public(), "highlight": highlight} for m, highlight in found]

    # -- sockets ----------------------------------------------------------------------------

    async def join(self, user_id: str, sid: str, room_id: str) -> dict[str, Any]:
        room = await self._readable(user_id, room_id)
        await self._sockets.join_room(sid, room.id)
        online = await self._presence.joined(sid, user_id, room.id)
        return {"room": room.public(), "online_user_ids": online}

    async def left(self, user_id: str, sid: str, room_id: str) -> None:
        """``chat:leave``: of a room the caller is not a member of (or that does not
        exist) it is forbidden, as every room action is."""
        room = as_uuid(room_id)
        if room is None or (
            not self._presence.has_joined(sid, room)
            and not await self._rooms.is_member(room, user_id)
        ):
            raise Forbidden(_NOT_A_MEMBER)
        await self.leave(sid, room)

    async def leave(self, sid: str, room_id: str) -> None:
        """This socket stops hearing the room (also when a removal evicts it)."""
        room = as_uuid(room_id)
        if room is None:
            return
        await self._sockets.leave_room(sid, room)
        self._typing_at.pop((sid, room), None)
        await self._presence.left(sid, room)

    async def send(
        self,
        user_id: str,
        sid: str,
        *,
        room_id: str,
        client_msg_id: str,
        text: str,
        attachments: list[str] | None = None,
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
        # Checked before the transaction: complete uploads of the sender's own.
        carried = await self._attachments.check(user_id, attachments) if attachments else []
        # Who has no socket anywhere is read before the transaction: what the
        # message owes them commits with it, or neither does.
        absent = await self._absent_members(room, user_id)
        async with self._db.transaction() as conn:
            stored = await self._messages.send(
                conn, room_id=room, sender_id=user_id, client_msg_id=client_msg_id, text=text
            )
            if stored is None:
                raise Forbidden(_NOT_A_MEMBER)
            message, created, version = stored
            if created:
                await self._attachments.attach(conn, message.id, carried)
                now = message.created_at.timestamp()
                if self._cached_version(room) != version:
                    # Members changed since the cache: push only to who is a member now.
                    still = await self._rooms.members_among(conn, room, absent)
                    absent = [m for m in absent if m in still]
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
        if carried or not created:  # a plain new message has none: no query on that path
            message = (await self._with_attachments([message]))[0]
        if created:
            if absent:
                self._kick()
            await self._fanout.to_room(
                room, "chat:message", {"message": message.public()}, skip_sid=sid, version=version
            )
        return message

    async def typing(self, user_id: str, sid: str, room_id: str, typing: bool) -> None:
        room = await self._member_or_forbidden(user_id, room_id, sid=sid)
        now = self._clock.monotonic()
        last = self._typing_at.get((sid, room))
        if (
            last is not None
            and last[1] == typing
            and now - last[0] < self._limits.typing_interval_s
        ):
            return  # repeats of the same state within the interval are dropped; a change never
        self._typing_at[(sid, room)] = (now, typing)
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
        allowed = await self._rooms.member_rooms(user_id, valid) if valid else {}
        # A member added later reads from their member_added event on.
        readable = {
            c: max(wanted[raw], allowed[c] - 1) for raw, c in canonical.items() if c in allowed
        }
        denied = [raw for raw, c in canonical.items() if c not in allowed]
        found = await self._messages.after(readable, limit=SYNC_PER_ROOM + 1)
        if self._archive.enabled and readable:
            await self._sync_from_archive(readable, found)
        more = [r for r, ms in found.items() if len(ms) > SYNC_PER_ROOM]
        linked = await self._with_attachments([m for ms in found.values() for m in ms])
        by_id = {m.id: m for m in linked}
        messages = {r: [by_id[m.id] for m in ms[:SYNC_PER_ROOM]] for r, ms in found.items()}
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
            return room  # joining checked membership; a removal evicts the socket
        if not await self._rooms.is_member(room, user_id):
            raise Forbidden(_NOT_A_MEMBER)
        return room

    async def _member_ids(self, room_id: str) -> list[str]:
        cached = self._members.get(room_id)
        if cached is None:
            return (await self.members_version(room_id))[1]
        self._members.move_to_end(room_id)
        return cached[1]

    def _cached_version(self, room_id: str) -> int | None:
        cached = self._members.get(room_id)
        return None if cached is None else cached[0]

    async def members_version(self, room_id: str) -> tuple[int, list[str]]:
        """The room's members as they are now (and this node's cache of them)."""
        version, members = await self._rooms.member_ids(room_id)
        self._members[room_id] = (version, members)
        self._members.move_to_end(room_id)
        if len(self._members) > 10_000:
            self._members.popitem(last=False)
        return version, members

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
