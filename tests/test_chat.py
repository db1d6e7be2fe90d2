"""Chat on one node: rooms over REST, the chat events, limits, read markers and resync."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from server.settings import LimitSettings
from storage.crypto import FieldCipher, parse_keys
from tests.clients import Account, Socket, make_room, send
from tests.conftest import FakeClock, Running, ServerFactory
from tests.services import DATA_KEYS

SocketFactory = Callable[..., Socket]


async def _joined(
    sockets: SocketFactory, server: Running, account: Account, room_id: str
) -> tuple[Socket, dict[str, Any]]:
    socket = sockets()
    await socket.connect(server.url, token=account.access_token)
    ack = await socket.call("chat:join", {"room_id": room_id})
    assert ack["ok"], ack
    return socket, ack


# -- REST ---------------------------------------------------------------------------------


async def test_a_direct_room_is_unique_per_pair(server: Running) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/rooms",
        json={"kind": "direct", "member_ids": [bob.id]},
        token=alice.access_token,
    )
    assert status == 201
    room = body["room"]
    assert room["kind"] == "direct" and room["last_seq"] == 0
    assert sorted(room["member_ids"]) == sorted([alice.id, bob.id])
    # Asking again, from either side, answers the same room with 200.
    for who, other in ((alice, bob), (bob, alice)):
        status, again, _ = await server.api.call(
            "POST",
            "/api/v1/rooms",
            json={"kind": "direct", "member_ids": [other.id]},
            token=who.access_token,
        )
        assert status == 200 and again["room"]["id"] == room["id"]


async def test_room_creation_refuses_bad_member_lists(server: Running) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    cases: list[dict[str, Any]] = [
        {"kind": "direct", "member_ids": [alice.id]},  # with oneself
        {"kind": "direct", "member_ids": [bob.id, str(uuid.uuid4())]},
        {"kind": "group", "member_ids": [bob.id]},  # no title
        {"kind": "group", "title": "x", "member_ids": [str(uuid.uuid4()) for _ in range(500)]},
        {"kind": "channel", "member_ids": [bob.id]},
        {"kind": "group", "title": "x", "member_ids": "bob"},
    ]
    for body in cases:
        status, answer, _ = await server.api.call(
            "POST", "/api/v1/rooms", json=body, token=alice.access_token
        )
        assert status == 400 and answer["error"]["code"] == "invalid", (body, answer)
    # Well formed, naming users who do not exist: not_found, as any id that names nothing.
    for unknown in ([str(uuid.uuid4())], ["not-an-id"]):
        status, answer, _ = await server.api.call(
            "POST",
            "/api/v1/rooms",
            json={"kind": "group", "title": "x", "member_ids": unknown},
            token=alice.access_token,
        )
        assert status == 404 and answer["error"]["code"] == "not_found", (unknown, answer)
    status, answer, _ = await server.api.call(
        "POST", "/api/v1/rooms", json={"kind": "direct", "member_ids": [bob.id]}
    )
    assert status == 401


async def test_a_group_room_holds_up_to_500_members(server: Running, db: str) -> None:
    alice = await server.api.register()
    conn = await asyncpg.connect(db)
    try:
        ids = [
            r["id"]
            for r in await conn.fetch(
                """INSERT INTO users (email, display_name, role)
                   SELECT 'm' || n || '@example.org', 'M' || n, 'donor'
                     FROM generate_series(1, 499) n RETURNING id::text"""
            )
        ]
    finally:
        await conn.close()
    status, body, _ = await server.api.call(
        "POST",
        "/api/v1/rooms",
        json={"kind": "group", "title": "Everyone", "member_ids": ids},
        token=alice.access_token,
    )
    assert status == 201 and len(body["room"]["member_ids"]) == 500
    assert body["room"]["member_ids"][0] == alice.id


async def test_rooms_list_last_seq_and_unread(server: Running, sockets: SocketFactory) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    other = await make_room(server.api, bob, [alice], kind="direct")
    socket_a, _ = await _joined(sockets, server, alice, room["id"])
    for n in range(3):
        await send(socket_a, room["id"], f"hello {n}")
    socket_b, _ = await _joined(sockets, server, bob, room["id"])
    await send(socket_b, room["id"], "hi back")

    async def listing(account: Account) -> dict[str, dict[str, Any]]:
        status, body, _ = await server.api.call("GET", "/api/v1/rooms", token=account.access_token)
        assert status == 200
        return {r["id"]: r for r in body["rooms"]}

    seen_by_bob = await listing(bob)
    assert set(seen_by_bob) == {room["id"], other["id"]}
    assert seen_by_bob[room["id"]]["last_seq"] == 4
    assert seen_by_bob[room["id"]]["unread"] == 3  # his own message is not unread
    assert (await listing(alice))[room["id"]]["unread"] == 1
    assert (await socket_b.call("chat:read", {"room_id": room["id"], "seq": 2}))["ok"]
    assert (await listing(bob))[room["id"]]["unread"] == 1
    stranger = await server.api.register()
    assert await listing(stranger) == {}


async def test_history_pages_newest_first_for_members_only(
    make_server: ServerFactory, sockets: SocketFactory
) -> None:
    server = await make_server(
        limits=LimitSettings(chat_send_per_window=1000, socket_event_burst=1000)
    )
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket, _ = await _joined(sockets, server, alice, room["id"])
    for n in range(1, 206):
        await send(socket, room["id"], f"m{n}")
    path = f"/api/v1/rooms/{room['id']}/messages"

    status, body, _ = await server.api.call("GET", path, token=bob.access_token)
    assert status == 200 and [m["seq"] for m in body["messages"]] == list(range(205, 155, -1))
    status, body, _ = await server.api.call(
        "GET", path + "?before_seq=10&limit=3", token=bob.access_token
    )
    assert [m["text"] for m in body["messages"]] == ["m9", "m8", "m7"]
    status, body, _ = await server.api.call("GET", path + "?limit=100000", token=bob.access_token)
    assert status == 200 and len(body["messages"]) == 200  # clamped
    for query in ("?limit=0", "?limit=x", "?before_seq=-1", "?before_seq=1e3"):
        status, body, _ = await server.api.call("GET", path + query, token=bob.access_token)
        assert status == 400 and body["error"]["code"] == "invalid", query
    stranger = await server.api.register()
    for room_path in (path, f"/api/v1/rooms/{uuid.uuid4()}/messages", "/api/v1/rooms/zz/messages"):
        status, body, _ = await server.api.call("GET", room_path, token=stranger.access_token)
        assert status == 403 and body["error"]["code"] == "forbidden"
    status, body, _ = await server.api.call(
        "GET", f"/api/v1/rooms/{room['id']}", token=stranger.access_token
    )
    assert status == 403


# -- events -------------------------------------------------------------------------------


async def test_join_acks_the_room_and_who_is_online(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, carol = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob, carol])
    socket_a, ack = await _joined(sockets, server, alice, room["id"])
    assert ack["room"]["id"] == room["id"] and ack["online_user_ids"] == [alice.id]
    socket_b, ack = await _joined(sockets, server, bob, room["id"])
    assert sorted(ack["online_user_ids"]) == sorted([alice.id, bob.id])
    assert await socket_a.inbox.next("presence") == {
        "room_id": room["id"],
        "user_id": bob.id,
        "status": "online",
    }
    assert socket_b.inbox.count("presence") == 0  # not to the joining socket itself
    stranger = await server.api.register()
    socket_s = sockets()
    await socket_s.connect(server.url, token=stranger.access_token)
    for room_id in (room["id"], str(uuid.uuid4()), "nope"):
        ack = await socket_s.call("chat:join", {"room_id": room_id})
        assert ack == {
            "ok": False,
            "error": {"code": "forbidden", "message": ack["error"]["message"]},
        }
    for bad in (None, "x", {"room_id": 5}, {}):
        ack = await socket_s.call("chat:join", bad)
        assert not ack["ok"] and ack["error"]["code"] == "invalid"
    assert socket_s.sio.connected


async def test_send_reaches_joined_sockets_but_not_the_sending_one(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, carol = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob, carol])
    phone, _ = await _joined(sockets, server, alice, room["id"])
    laptop, _ = await _joined(sockets, server, alice, room["id"])
    bobs, _ = await _joined(sockets, server, bob, room["id"])
    carol_unjoined = sockets()
    await carol_unjoined.connect(server.url, token=carol.access_token)

    message = await send(phone, room["id"], "héllo 👋")
    assert message["seq"] == 1 and message["sender_id"] == alice.id
    assert message["room_id"] == room["id"] and message["text"] == "héllo 👋"
    assert message["created_at"].endswith("Z") and len(message["created_at"]) == 24
    assert await bobs.inbox.next("chat:message") == {"message": message}
    assert await laptop.inbox.next("chat:message") == {"message": message}
    # A later event to the room proves the earlier one was not on its way to these.
    await bobs.call("chat:typing", {"room_id": room["id"], "typing": True})
    await phone.inbox.next("chat:typing")
    assert phone.inbox.count("chat:message") == 0
    assert carol_unjoined.inbox.count("chat:message") == 0


async def test_a_retried_send_returns_the_first_message_and_broadcasts_nothing(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    phone, _ = await _joined(sockets, server, alice, room["id"])
    laptop, _ = await _joined(sockets, server, alice, room["id"])
    bobs, _ = await _joined(sockets, server, bob, room["id"])
    first = await send(phone, room["id"], "once", client_msg_id="c-1")
    again = await send(laptop, room["id"], "once, edited", client_msg_id="c-1")
    assert again == first
    # The same client_msg_id from another sender is another message.
    bobs_own = await send(bobs, room["id"], "mine", client_msg_id="c-1")
    assert bobs_own["seq"] == 2
    assert (await bobs.inbox.nth("chat:message", 1))["message"] == first
    second = await send(phone, room["id"], "twice", client_msg_id="c-2")
    assert (await bobs.inbox.nth("chat:message", 2))["message"] == second
    assert [m["message"]["seq"] for m in bobs.inbox.events["chat:message"]] == [1, 3]


async def test_text_is_1_to_4000_code_points(server: Running, sockets: SocketFactory) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket, _ = await _joined(sockets, server, alice, room["id"])
    long_ok = "🚑" * 4000  # 4000 code points, 16000 bytes of UTF-8
    assert (await send(socket, room["id"], long_ok))["text"] == long_ok
    for text in ("", "🚑" * 4001, 7, None):
        ack = await socket.call(
            "chat:send", {"room_id": room["id"], "client_msg_id": uuid.uuid4().hex, "text": text}
        )
        assert not ack["ok"] and ack["error"]["code"] == "invalid", text
    ack = await socket.call("chat:send", {"room_id": room["id"], "text": "no client id"})
    assert ack["error"]["code"] == "invalid"
    stranger = await server.api.register()
    outsider = sockets()
    await outsider.connect(server.url, token=stranger.access_token)
    ack = await outsider.call(
        "chat:send", {"room_id": room["id"], "client_msg_id": "x", "text": "let me in"}
    )
    assert ack["error"]["code"] == "forbidden"
    _, body, _ = await server.api.call(
        "GET", f"/api/v1/rooms/{room['id']}/messages", token=alice.access_token
    )
    assert [m["seq"] for m in body["messages"]] == [1]


async def test_sends_are_rate_limited_per_user(
    make_server: ServerFactory, sockets: SocketFactory, clock: FakeClock
) -> None:
    server = await make_server(
        limits=LimitSettings(chat_send_per_window=5, chat_send_window_s=10.0)
    )
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    phone, _ = await _joined(sockets, server, alice, room["id"])
    laptop, _ = await _joined(sockets, server, alice, room["id"])
    for n in range(5):
        await send(phone if n % 2 else laptop, room["id"], f"m{n}")
    ack = await laptop.call(
        "chat:send", {"room_id": room["id"], "client_msg_id": "late", "text": "too many"}
    )
    assert ack["ok"] is False and ack["error"]["code"] == "rate_limited"
    assert 1 <= ack["error"]["retry_after"] <= 10
    # Bob has his own budget, and Alice gets hers back when the window is over.
    bobs, _ = await _joined(sockets, server, bob, room["id"])
    await send(bobs, room["id"], "still fine")
    clock.advance(10.5)
    assert (await send(laptop, room["id"], "again", client_msg_id="late"))["seq"] == 7


async def test_typing_repeats_are_dropped_within_a_second_but_a_change_always_goes_out(
    server: Running, sockets: SocketFactory, clock: FakeClock
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    typer, _ = await _joined(sockets, server, alice, room["id"])
    watcher, _ = await _joined(sockets, server, bob, room["id"])
    for typing in (True, True, False):
        assert await typer.call("chat:typing", {"room_id": room["id"], "typing": typing}) == {
            "ok": True
        }
    # The repeated True is dropped; "stopped typing" is a change and is never lost.
    assert await watcher.inbox.nth("chat:typing", 2) == {
        "room_id": room["id"],
        "user_id": alice.id,
        "typing": False,
    }
    clock.advance(1.1)  # past the interval a repeat goes out again
    assert (await typer.call("chat:typing", {"room_id": room["id"], "typing": False}))["ok"]
    await watcher.inbox.nth("chat:typing", 3)
    # A round trip the watcher makes after the typer's last event: nothing more came.
    await watcher.call("chat:sync", {"rooms": {}})
    assert [e["typing"] for e in watcher.inbox.events["chat:typing"]] == [True, False, False]
    assert typer.inbox.count("chat:typing") == 0
    ack = await typer.call("chat:typing", {"room_id": room["id"], "typing": "yes"})
    assert ack["error"]["code"] == "invalid"
    stranger = await server.api.register()
    outsider = sockets()
    await outsider.connect(server.url, token=stranger.access_token)
    ack = await outsider.call("chat:typing", {"room_id": room["id"], "typing": True})
    assert ack["error"]["code"] == "forbidden"


async def test_read_markers_move_forward_and_are_broadcast(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    socket_a, _ = await _joined(sockets, server, alice, room["id"])
    socket_b, _ = await _joined(sockets, server, bob, room["id"])
    for n in range(3):
        await send(socket_a, room["id"], f"m{n}")
    assert await socket_b.call("chat:read", {"room_id": room["id"], "seq": 2}) == {"ok": True}
    assert await socket_a.inbox.next("chat:read") == {
        "room_id": room["id"],
        "user_id": bob.id,
        "seq": 2,
    }
    # Going back is accepted and changes nothing; passing the last message is invalid.
    assert (await socket_b.call("chat:read", {"room_id": room["id"], "seq": 1}))["ok"]
    ack = await socket_b.call("chat:read", {"room_id": room["id"], "seq": 4})
    assert ack["error"]["code"] == "invalid"
    assert (await socket_b.call("chat:read", {"room_id": room["id"], "seq": 3}))["ok"]
    assert (await socket_a.inbox.next("chat:read"))["seq"] == 3
    assert socket_a.inbox.count("chat:read") == 2
    stranger = await server.api.register()
    outsider = sockets()
    await outsider.connect(server.url, token=stranger.access_token)
    ack = await outsider.call("chat:read", {"room_id": room["id"], "seq": 1})
    assert ack["error"]["code"] == "forbidden"


async def test_sync_returns_what_was_missed_with_more_and_denied(
    server: Running, sockets: SocketFactory, db: str
) -> None:
    alice, bob, carol = [await server.api.register() for _ in range(3)]
    busy = await make_room(server.api, alice, [bob], title="busy")
    quiet = await make_room(server.api, alice, [bob], title="quiet")
    private = await make_room(server.api, carol, [alice], kind="direct")
    conn = await asyncpg.connect(db)
    try:
        await conn.execute(
            "SELECT chat_send($1::uuid, $2::uuid, 'bulk-' || n, 'text ' || n)"
            " FROM generate_series(1, 502) n",
            busy["id"],
            alice.id,
        )
    finally:
        await conn.close()
    socket_a, _ = await _joined(sockets, server, alice, quiet["id"])
    for n in range(3):
        await send(socket_a, quiet["id"], f"q{n}")
    socket_b = sockets()
    await socket_b.connect(server.url, token=bob.access_token)
    ack = await socket_b.call(
        "chat:sync",
        {"rooms": {busy["id"]: 1, quiet["id"]: 1, private["id"]: 0, "garbage": 0}},
    )
    assert ack["ok"]
    assert [m["seq"] for m in ack["messages"][busy["id"]]] == list(range(2, 502))
    assert [m["text"] for m in ack["messages"][quiet["id"]]] == ["q1", "q2"]
    assert ack["more"] == [busy["id"]]
    assert sorted(ack["denied"]) == sorted([private["id"], "garbage"])
    assert set(ack["messages"]) == {busy["id"], quiet["id"]}
    # Following up from the last seq received gets the rest.
    ack = await socket_b.call("chat:sync", {"rooms": {busy["id"]: 501, quiet["id"]: 3}})
    assert [m["seq"] for m in ack["messages"][busy["id"]]] == [502]
    assert ack["messages"][quiet["id"]] == [] and ack["more"] == []
    for bad in ({"rooms": {busy["id"]: -1}}, {"rooms": {busy["id"]: "1"}}, {"rooms": []}, {}):
        ack = await socket_b.call("chat:sync", bad)
        assert ack["error"]["code"] == "invalid", bad


async def test_presence_goes_offline_after_the_last_socket_leaves(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob = await server.api.register(), await server.api.register()
    room = await make_room(server.api, alice, [bob])
    watcher, _ = await _joined(sockets, server, alice, room["id"])
    phone, _ = await _joined(sockets, server, bob, room["id"])
    laptop, _ = await _joined(sockets, server, bob, room["id"])
    await watcher.inbox.nth("presence", 2)
    await phone.close()
    assert (await laptop.call("chat:leave", {"room_id": room["id"]}))["ok"]
    offline = await watcher.inbox.nth("presence", 3)
    assert offline == {"room_id": room["id"], "user_id": bob.id, "status": "offline"}
    assert [e["status"] for e in watcher.inbox.events["presence"]] == [
        "online",
        "online",
        "offline",
    ]
    # Leaving stops chat:message for that socket; the join ack no longer lists bob.
    await send(watcher, room["id"], "anyone?")
    _, ack = await _joined(sockets, server, alice, room["id"])
    assert ack["online_user_ids"] == [alice.id]
    assert laptop.inbox.count("chat:message") == 0


async def test_members_without_a_socket_are_owed_a_push(
    server: Running, sockets: SocketFactory, db: str
) -> None:
    alice, bob, carol = [await server.api.register() for _ in range(3)]
    room = await make_room(server.api, alice, [bob, carol])
    socket_a, _ = await _joined(sockets, server, alice, room["id"])
    connected_bob = sockets()
    await connected_bob.connect(server.url, token=bob.access_token)
    message = await send(socket_a, room["id"], "are you there?")
    conn = await asyncpg.connect(db)
    try:
        rows = await conn.fetch(
            "SELECT user_id::text, channel, kind, body, data::text FROM deliveries"
        )
    finally:
        await conn.close()
    cipher = FieldCipher(parse_keys(DATA_KEYS))  # push texts are personal data at rest
    assert [
        (r["user_id"], r["channel"], r["kind"], cipher.decrypt(r["body"], "body")) for r in rows
    ] == [(carol.id, "push", "chat_message", "are you there?")]
    assert '"seq": 1' in rows[0]["data"] and message["id"] in rows[0]["data"]


async def test_bad_payloads_get_invalid_acks_and_keep_the_socket(
    server: Running, sockets: SocketFactory
) -> None:
    alice = await server.api.register()
    socket = sockets()
    await socket.connect(server.url, token=alice.access_token)
    for event in ("chat:join", "chat:leave", "chat:send", "chat:typing", "chat:read", "chat:sync"):
        for payload in (None, [], "text", 3.5, {"room_id": ["x"]}, {"room_id": "x" * 65}):
            ack = await socket.call(event, payload)
            assert ack["ok"] is False and ack["error"]["code"] == "invalid", (event, payload)
    await asyncio.sleep(0)
    assert socket.sio.connected
