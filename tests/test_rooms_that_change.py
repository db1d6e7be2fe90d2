"""Group rooms that change: members who come and go with roles, titles, edits and
deletes, each a room event with the room's next seq, on two nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from server.settings import LimitSettings, Settings
from tests.clients import Account, Api, Socket, make_room, send
from tests.conftest import Running, ServerFactory

SocketFactory = Callable[..., Socket]


async def _two_nodes(make_server: ServerFactory, settings: Settings) -> tuple[Running, Running]:
    one = await make_server(settings)
    two = await make_server(replace(settings, node_id="second"))
    return one, two


async def _joined(sockets: SocketFactory, url: str, account: Account, room_id: str) -> Socket:
    socket = sockets()
    await socket.connect(url, token=account.access_token)
    ack = await socket.call("chat:join", {"room_id": room_id})
    assert ack["ok"], ack
    return socket


async def _call(api: Api, method: str, path: str, who: Account, body: Any = None) -> Any:
    status, answer, _ = await api.call(method, path, json=body, token=who.access_token)
    return status, answer


async def _sync(socket: Socket, room_id: str, last_seq: int = 0) -> list[dict[str, Any]]:
    ack = await socket.call("chat:sync", {"rooms": {room_id: last_seq}})
    assert ack["ok"], ack
    return list(ack["messages"].get(room_id, []))


async def test_members_come_and_go_with_roles_and_titles_seen_live_and_in_sync(
    make_server: ServerFactory, redis_settings: Settings, sockets: SocketFactory
) -> None:
    one, two = await _two_nodes(make_server, redis_settings)
    alice, bob, carol = [await one.api.register() for _ in range(3)]
    room = await make_room(one.api, alice, [bob], title="Family")
    assert {(m["user_id"], m["role"]) for m in room["members"]} == {
        (alice.id, "owner"),
        (bob.id, "member"),
    }
    alices = await _joined(sockets, one.url, alice, room["id"])
    bobs = await _joined(sockets, two.url, bob, room["id"])
    await send(alices, room["id"], "before carol")
    base = f"/api/v1/rooms/{room['id']}"

    status, answer = await _call(
        one.api, "POST", base + "/members", alice, {"user_ids": [carol.id]}
    )
    assert status == 200 and carol.id in answer["room"]["member_ids"]
    added = (await bobs.inbox.nth("chat:message", 2))["message"]
    assert (added["kind"], added["data"], added["seq"]) == (
        "member_added",
        {"user_ids": [carol.id]},
        2,
    )
    # Carol reads the room from her member_added event on, in sync and history.
    carols = await _joined(sockets, two.url, carol, room["id"])
    assert [m["seq"] for m in await _sync(carols, room["id"])] == [2]
    status, history = await _call(two.api, "GET", base + "/messages", carol)
    assert status == 200 and [m["kind"] for m in history["messages"]] == ["member_added"]

    status, answer = await _call(
        one.api, "PATCH", f"{base}/members/{carol.id}", alice, {"role": "admin"}
    )
    assert status == 200 and {"user_id": carol.id, "role": "admin"} in answer["room"]["members"]
    status, answer = await _call(two.api, "PATCH", base, carol, {"title": "Family & friends"})
    assert status == 200 and answer["room"]["title"] == "Family & friends"
    # Carol, an admin, removes Bob: he hears it, then nothing of the room any more.
    status, _ = await _call(two.api, "DELETE", f"{base}/members/{bob.id}", carol)
    assert status == 204
    assert await bobs.inbox.next("room:removed") == {"room_id": room["id"]}
    status, _ = await _call(one.api, "DELETE", f"{base}/members/{carol.id}", carol)  # leaving
    assert status == 204

    kinds = [(m["seq"], m["kind"], m["data"]) for m in await _sync(alices, room["id"])]
    assert kinds == [
        (1, "text", {}),
        (2, "member_added", {"user_ids": [carol.id]}),
        (3, "role_changed", {"user_id": carol.id, "role": "admin"}),
        (4, "title_changed", {"title": "Family & friends"}),
        (5, "member_removed", {"user_ids": [bob.id]}),
        (6, "member_removed", {"user_ids": [carol.id]}),
    ]
    live = [(await alices.inbox.nth("chat:message", n))["message"]["seq"] for n in range(1, 6)]
    assert live == [2, 3, 4, 5, 6]
    bob_heard = [e["message"]["seq"] for e in bobs.inbox.events["chat:message"]]
    assert bob_heard == [1, 2, 3, 4, 5]  # up to his own removal, nothing after it
    for socket, event, payload in (
        (bobs, "chat:join", {"room_id": room["id"]}),
        (bobs, "chat:send", {"room_id": room["id"], "client_msg_id": "x", "text": "hi?"}),
    ):
        ack = await socket.call(event, payload)
        assert ack["error"]["code"] == "forbidden", (event, ack)
    ack = await bobs.call("chat:sync", {"rooms": {room["id"]: 0}})
    assert ack["denied"] == [room["id"]]
    status, answer = await _call(two.api, "GET", base + "/messages", bob)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = await _call(one.api, "GET", base, alice)
    assert answer["room"]["members"] == [{"user_id": alice.id, "role": "owner"}]


async def test_a_removed_member_gets_nothing_sent_after_the_removal_under_concurrent_sends(
    make_server: ServerFactory, redis_settings: Settings, sockets: SocketFactory
) -> None:
    busy = replace(redis_settings, limits=LimitSettings(chat_send_per_window=1000))
    one, two = await _two_nodes(make_server, busy)
    alice, bob, dan, erin = [await one.api.register() for _ in range(4)]
    room = await make_room(one.api, alice, [bob, dan, erin], title="Busy")
    sender = await _joined(sockets, one.url, dan, room["id"])
    removed = await _joined(sockets, two.url, bob, room["id"])
    witness = await _joined(sockets, two.url, erin, room["id"])  # on the removed one's node

    async def chatter() -> None:
        for n in range(60):
            await send(sender, room["id"], f"m{n}")

    async def removal() -> None:
        await asyncio.sleep(0)
        status, _ = await _call(
            two.api, "DELETE", f"/api/v1/rooms/{room['id']}/members/{bob.id}", alice
        )
        assert status == 204

    await asyncio.gather(chatter(), removal())
    last = await send(sender, room["id"], "the last one")
    # The witness shares bob's node: once it has the last message, bob's would be there too.
    await witness.inbox.nth("chat:message", last["seq"])
    events = [(await _sync(witness, room["id"]))]
    cut = next(m["seq"] for m in events[0] if m["kind"] == "member_removed")
    heard = [e["message"]["seq"] for e in removed.inbox.events["chat:message"]]
    assert heard and max(heard) == cut, (cut, heard)
    assert sorted(heard) == list(range(1, cut + 1))  # gapless up to the cut, nothing after


async def test_edits_and_deletes_are_room_events_and_history_reads_as_now(
    make_server: ServerFactory, redis_settings: Settings, sockets: SocketFactory
) -> None:
    one, two = await _two_nodes(make_server, redis_settings)
    alice, bob = await one.api.register(), await one.api.register()
    room = await make_room(one.api, alice, [bob], title="Notes")
    alices = await _joined(sockets, one.url, alice, room["id"])
    bobs = await _joined(sockets, two.url, bob, room["id"])
    typo = await send(bobs, room["id"], "see you at 5pn")
    other = await send(bobs, room["id"], "bring the pills")
    edit = {"room_id": room["id"], "message_id": typo["id"], "text": "see you at 5pm"}
    ack = await alices.call("chat:edit", {**edit, "client_msg_id": "e-0"})
    assert ack["error"]["code"] == "forbidden"  # only the sender edits
    ack = await bobs.call("chat:edit", {**edit, "client_msg_id": "e-1"})
    assert ack["ok"], ack
    edited = ack["message"]
    assert (edited["kind"], edited["target_id"], edited["seq"]) == ("edit", typo["id"], 3)
    again = await bobs.call("chat:edit", {**edit, "text": "other", "client_msg_id": "e-1"})
    assert again["message"] == edited  # idempotent on client_msg_id
    # Alice, the owner, may delete bob's message.
    ack = await alices.call(
        "chat:delete", {"room_id": room["id"], "message_id": other["id"], "client_msg_id": "d-1"}
    )
    assert ack["ok"] and ack["message"]["kind"] == "delete", ack
    live = [(await alices.inbox.nth("chat:message", n))["message"] for n in (1, 2, 3)]
    assert [m["kind"] for m in live] == ["text", "text", "edit"]
    assert (await bobs.inbox.nth("chat:message", 1))["message"]["kind"] == "delete"
    status, history = await _call(two.api, "GET", f"/api/v1/rooms/{room['id']}/messages", bob)
    assert status == 200
    assert [
        (m["id"], m["text"], m["deleted"], m["edited_at"] is not None) for m in history["messages"]
    ] == [
        (other["id"], "", True, False),
        (typo["id"], "see you at 5pm", False, True),
    ]
    synced = await _sync(alices, room["id"])
    assert [(m["seq"], m["kind"]) for m in synced] == [
        (1, "text"),
        (2, "text"),
        (3, "edit"),
        (4, "delete"),
    ]
    for payload in (
        {"room_id": room["id"], "message_id": other["id"], "text": "x", "client_msg_id": "e-2"},
        {
            "room_id": room["id"],
            "message_id": str(uuid.uuid4()),
            "text": "x",
            "client_msg_id": "e-3",
        },
    ):
        ack = await bobs.call("chat:edit", payload)
        assert ack["error"]["code"] == "not_found", ack  # deleted, or never there


async def test_who_may_change_what(server: Running, sockets: SocketFactory) -> None:
    alice, bob, carol, eve = [await server.api.register() for _ in range(4)]
    group = await make_room(server.api, alice, [bob], title="G")
    direct = await make_room(server.api, alice, [carol], kind="direct")
    base = f"/api/v1/rooms/{group['id']}"
    cases = [
        (bob, "POST", base + "/members", {"user_ids": [carol.id]}, 403),  # a member
        (eve, "POST", base + "/members", {"user_ids": [carol.id]}, 403),  # a stranger
        (alice, "POST", base + "/members", {"user_ids": ["nobody"]}, 400),
        (alice, "POST", base + "/members", {"user_ids": []}, 400),
        (alice, "POST", f"/api/v1/rooms/{direct['id']}/members", {"user_ids": [bob.id]}, 400),
        (alice, "PATCH", f"/api/v1/rooms/{direct['id']}", {"title": "x"}, 400),
        (bob, "PATCH", base, {"title": "mine"}, 403),
        (bob, "PATCH", f"{base}/members/{alice.id}", {"role": "member"}, 403),
        (alice, "PATCH", f"{base}/members/{bob.id}", {"role": "owner"}, 400),
        (alice, "PATCH", f"{base}/members/{eve.id}", {"role": "admin"}, 404),
        (bob, "DELETE", f"{base}/members/{alice.id}", None, 403),
        (eve, "DELETE", f"{base}/members/{eve.id}", None, 403),
    ]
    for who, method, path, body, expected in cases:
        status, answer = await _call(server.api, method, path, who, body)
        assert status == expected, (method, path, body, answer)
    # The owner leaves: the room goes on with a new owner, told as the next event.
    status, _ = await _call(server.api, "DELETE", f"{base}/members/{alice.id}", alice)
    assert status == 204
    status, answer = await _call(server.api, "GET", base, bob)
    assert answer["room"]["members"] == [{"user_id": bob.id, "role": "owner"}]
    bobs = await _joined(sockets, server.url, bob, group["id"])
    kinds = [(m["kind"], m["data"]) for m in await _sync(bobs, group["id"])]
    assert kinds == [
        ("member_removed", {"user_ids": [alice.id]}),
        ("role_changed", {"user_id": bob.id, "role": "owner"}),
    ]
    ack = await bobs.call("chat:leave", {"room_id": direct["id"]})
    assert ack["error"]["code"] == "forbidden"  # not his room
    ack = await bobs.call("chat:leave", {"room_id": str(uuid.uuid4())})
    assert ack["error"]["code"] == "forbidden"  # no such room: the same answer, nothing told


async def test_search_finds_what_the_caller_may_read_best_first_and_nothing_else(
    server: Running, sockets: SocketFactory
) -> None:
    alice, bob, carol, eve = [await server.api.register() for _ in range(4)]
    room = await make_room(server.api, alice, [bob], title="Care")
    secret = await make_room(server.api, eve, [bob], title="Not alice's")
    alices = await _joined(sockets, server.url, alice, room["id"])
    bobs = await _joined(sockets, server.url, bob, secret["id"])
    await send(alices, room["id"], "The prescription for insulin is on the fridge")
    await send(alices, room["id"], "Insulin again: a prescription, then insulin twice")
    gone = await send(alices, room["id"], "delete this insulin note")
    await send(alices, room["id"], "Рецепт на инсулин лежит на холодильнике")
    await send(bobs, secret["id"], "insulin in the secret room")
    ack = await alices.call(
        "chat:delete", {"room_id": room["id"], "message_id": gone["id"], "client_msg_id": "d"}
    )
    assert ack["ok"]
    # Carol joins later: she may search only from her member_added on.
    status, _ = await _call(
        server.api, "POST", f"/api/v1/rooms/{room['id']}/members", alice, {"user_ids": [carol.id]}
    )
    assert status == 200
    await send(alices, room["id"], "insulin arrived for Carol too")

    async def search(who: Account, query: str) -> list[dict[str, Any]]:
        status, answer = await _call(server.api, "GET", f"/api/v1/search/messages?{query}", who)
        assert status == 200, answer
        return list(answer["messages"])

    found = await search(alice, "q=insulin&limit=500")
    texts = [m["text"] for m in found]
    assert texts[0] == "Insulin again: a prescription, then insulin twice"  # best match first
    assert "delete this insulin note" not in texts and "insulin in the secret room" not in texts
    assert all("<mark>" in m["highlight"] for m in found)
    assert [m["text"] for m in await search(alice, "q=инсулин")] == [
        "Рецепт на инсулин лежит на холодильнике"
    ]
    assert "<mark>инсулин</mark>" in (await search(alice, "q=инсулин"))[0]["highlight"]
    near = [m["text"] for m in await search(alice, "q=prescripton")]  # a typo still finds it
    assert any("prescription" in t for t in near), near
    assert [m["text"] for m in await search(carol, "q=insulin")] == [
        "insulin arrived for Carol too"
    ]
    assert [m["text"] for m in await search(bob, f"q=insulin&room_id={secret['id']}")] == [
        "insulin in the secret room"
    ]
    status, answer = await _call(
        server.api, "GET", f"/api/v1/search/messages?q=insulin&room_id={secret['id']}", alice
    )
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = await _call(server.api, "GET", "/api/v1/search/messages?q=", alice)
    assert status == 400 and answer["error"]["code"] == "invalid"
