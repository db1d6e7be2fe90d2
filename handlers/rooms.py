"""REST doors of chat rooms: create, list, read one, change, page through history, search."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.chat import ChatService
from services.wire import rest

__all__ = ["routes"]

_MEMBERS = "Group rooms only (a direct room is 400). Takes the room's next seq, like a message."


def routes(door: RestDoor, chat: ChatService) -> Api:
    api = Api(door, tag="chat")

    @api.route(
        "POST",
        "/api/v1/rooms",
        summary="Create a room",
        description="The caller is added to `member_ids`. A direct room is unique per pair: "
        "asking again answers 200 with the existing room.",
        auth=Auth.BEARER,
        body=rest.CreateRoom,
        answers={201: rest.RoomAnswer, 200: rest.RoomAnswer},
        errors=(403, 404),
        examples={"body": {"kind": "group", "member_ids": [], "title": "Night shift"}},
    )
    async def create_room(request: web.Request, body: rest.CreateRoom) -> web.Response:
        identity = await door.identity(request)
        wanted = body.root
        room, created = await chat.create_room(
            identity.user_id,
            kind=wanted.kind,
            member_ids=wanted.member_ids,
            title=wanted.title if isinstance(wanted, rest.GroupRoom) else None,
        )
        return json_response({"room": room.public()}, status=201 if created else 200)

    @api.route(
        "GET",
        "/api/v1/rooms",
        summary="The caller's rooms, each with last_seq and unread",
        auth=Auth.BEARER,
        answers={200: rest.Rooms},
    )
    async def list_rooms(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        rooms = await chat.rooms_of(identity.user_id)
        return json_response({"rooms": [r.public() for r in rooms]})

    @api.route(
        "GET",
        "/api/v1/rooms/{room_id}",
        summary="One room of the caller's",
        auth=Auth.BEARER,
        answers={200: rest.RoomAnswer},
        errors=(403,),
    )
    async def get_room(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        room = await chat.room(identity.user_id, request.match_info["room_id"])
        return json_response({"room": room.public()})

    @api.route(
        "PATCH",
        "/api/v1/rooms/{room_id}",
        summary="Set a group's title (owner or admin)",
        description=_MEMBERS,
        auth=Auth.BEARER,
        body=rest.RoomTitle,
        answers={200: rest.RoomAnswer},
        errors=(403,),
    )
    async def set_title(request: web.Request, body: rest.RoomTitle) -> web.Response:
        identity = await door.identity(request)
        room = await chat.set_title(identity.user_id, request.match_info["room_id"], body.title)
        return json_response({"room": room.public()})

    @api.route(
        "POST",
        "/api/v1/rooms/{room_id}/members",
        summary="Add members to a group (owner or admin)",
        description=_MEMBERS + " A member added later reads from their member_added on.",
        auth=Auth.BEARER,
        body=rest.AddMembers,
        answers={200: rest.RoomAnswer},
        errors=(403,),
    )
    async def add_members(request: web.Request, body: rest.AddMembers) -> web.Response:
        identity = await door.identity(request)
        room = await chat.add_members(
            identity.user_id, request.match_info["room_id"], body.user_ids
        )
        return json_response({"room": room.public()})

    @api.route(
        "DELETE",
        "/api/v1/rooms/{room_id}/members/{user_id}",
        summary="Remove a member (owner or admin), or leave (anyone, for themselves)",
        description=_MEMBERS + " The removed member's sockets leave the room on every node.",
        auth=Auth.BEARER,
        answers={204: None},
        errors=(400, 403),
    )
    async def remove_member(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        await chat.remove_member(
            identity.user_id, request.match_info["room_id"], request.match_info["user_id"]
        )
        return web.Response(status=204)

    @api.route(
        "PATCH",
        "/api/v1/rooms/{room_id}/members/{user_id}",
        summary="Change a member's role (owner)",
        description=_MEMBERS,
        auth=Auth.BEARER,
        body=rest.MemberRole,
        answers={200: rest.RoomAnswer},
        errors=(403,),
    )
    async def set_role(request: web.Request, body: rest.MemberRole) -> web.Response:
        identity = await door.identity(request)
        room = await chat.set_role(
            identity.user_id,
            request.match_info["room_id"],
            request.match_info["user_id"],
            body.role,
        )
        return json_response({"room": room.public()})

    @api.route(
        "GET",
        "/api/v1/search/messages",
        summary="Search the messages the caller may read",
        description="Best match first, each with `highlight`; never deleted messages.",
        auth=Auth.BEARER,
        query=rest.SearchQuery,
        answers={200: rest.Messages},
        errors=(403,),
    )
    async def search(request: web.Request, query: rest.SearchQuery) -> web.Response:
        identity = await door.identity(request)
        messages = await chat.search(
            identity.user_id, query.q, room_id=query.room_id, limit=query.limit
        )
        return json_response({"messages": messages})

    @api.route(
        "GET",
        "/api/v1/rooms/{room_id}/messages",
        summary="A page of history, newest first",
        description="Messages with seq < before_seq, as they now read: edited ones with "
        "`edited_at`, deleted ones with `deleted: true` and empty text; edit and delete "
        "events themselves are left out.",
        auth=Auth.BEARER,
        query=rest.HistoryQuery,
        answers={200: rest.Messages},
        errors=(403,),
    )
    async def history(request: web.Request, query: rest.HistoryQuery) -> web.Response:
        identity = await door.identity(request)
        messages = await chat.history(
            identity.user_id,
            request.match_info["room_id"],
            before_seq=query.before_seq,
            limit=query.limit,
        )
        return json_response({"messages": [m.public() for m in messages]})

    return api
