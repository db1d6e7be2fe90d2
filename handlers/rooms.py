"""REST doors of chat rooms: create, list, read one, page through history."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response, query_int
from services.chat import MAX_GROUP_MEMBERS, ChatService
from services.errors import Invalid

__all__ = ["routes"]


def routes(door: RestDoor, chat: ChatService) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/rooms")
    async def create_room(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        room, created = await chat.create_room(
            identity.user_id,
            kind=body.choice("kind", ("direct", "group")),
            member_ids=body.id_list("member_ids", max_items=MAX_GROUP_MEMBERS),
            title=body.opt_string("title", min_len=1, max_len=200),
        )
        return json_response({"room": room.public()}, status=201 if created else 200)

    @table.get("/api/v1/rooms")
    async def list_rooms(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        rooms = await chat.rooms_of(identity.user_id)
        return json_response({"rooms": [r.public() for r in rooms]})

    @table.get("/api/v1/rooms/{room_id}")
    async def get_room(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        room = await chat.room(identity.user_id, request.match_info["room_id"])
        return json_response({"room": room.public()})

    @table.patch("/api/v1/rooms/{room_id}")
    async def set_title(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        room = await chat.set_title(
            identity.user_id,
            request.match_info["room_id"],
            body.string("title", min_len=1, max_len=200, strip=True),
        )
        return json_response({"room": room.public()})

    @table.post("/api/v1/rooms/{room_id}/members")
    async def add_members(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        room = await chat.add_members(
            identity.user_id,
            request.match_info["room_id"],
            body.id_list("user_ids", max_items=MAX_GROUP_MEMBERS, min_items=1),
        )
        return json_response({"room": room.public()})

    @table.delete("/api/v1/rooms/{room_id}/members/{user_id}")
    async def remove_member(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await chat.remove_member(
            identity.user_id, request.match_info["room_id"], request.match_info["user_id"]
        )
        return web.Response(status=204)

    @table.patch("/api/v1/rooms/{room_id}/members/{user_id}")
    async def set_role(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        room = await chat.set_role(
            identity.user_id,
            request.match_info["room_id"],
            request.match_info["user_id"],
            body.string("role", max_len=16),
        )
        return json_response({"room": room.public()})

    @table.get("/api/v1/search/messages")
    async def search(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        room_id = request.query.get("room_id") or None
        if room_id is not None and len(room_id) > 64:
            raise Invalid("room_id must be a room id")
        messages = await chat.search(
            identity.user_id,
            request.query.get("q", ""),
            room_id=room_id,
            limit=query_int(request, "limit", minimum=1),
        )
        return json_response({"messages": messages})

    @table.get("/api/v1/rooms/{room_id}/messages")
    async def history(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        messages = await chat.history(
            identity.user_id,
            request.match_info["room_id"],
            before_seq=query_int(request, "before_seq", minimum=1),
            limit=query_int(request, "limit", minimum=1),
        )
        return json_response({"messages": [m.public() for m in messages]})

    return table
