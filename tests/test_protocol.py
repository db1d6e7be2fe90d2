"""The Socket.IO v5 protocol where a client gets it wrong, spoken as raw frames."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from realtime.seam import engine_of
from server.app import SOCKETIO
from server.settings import LimitSettings
from tests.conftest import Running, ServerFactory


async def _raw(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket")
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{")
    # The heartbeat of Node's socket.io: a ping every 25 s, 20 s to answer it.
    handshake = json.loads(opened[1:])
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (25000, 20000)
    return ws


async def test_connect_to_a_namespace_nobody_serves_gets_an_error_object(
    server: Running, http: aiohttp.ClientSession
) -> None:
    ws = await _raw(http, server.url)
    await ws.send_str("40/nope,")
    # Socket.IO v5: CONNECT_ERROR carries an object, so clients show a message.
    assert await ws.receive_str(timeout=5) == '44/nope,{"message":"not_found"}'
    await ws.send_str("40/live,")
    assert (await ws.receive_str(timeout=5)).startswith("40/live,{")
    await ws.close()


async def test_a_payload_nested_too_deep_gets_an_invalid_ack_and_the_socket_goes_on(
    server: Running, http: aiohttp.ClientSession
) -> None:
    account = await server.api.register()
    ws = await _raw(http, server.url)
    await ws.send_str("40" + json.dumps({"token": account.access_token}))
    assert (await ws.receive_str(timeout=5)).startswith("40{")
    deep = "[" * 10_000 + "]" * 10_000  # within the frame size limit, past any parser's depth
    await ws.send_str(
        '421["chat:send",{"room_id":"r","client_msg_id":"c","text":"t","x":' + deep + "}]"
    )
    answer = await ws.receive_str(timeout=5)
    assert answer.startswith("431[")
    ack = json.loads(answer[3:])[0]
    assert ack["ok"] is False and ack["error"]["code"] == "invalid", ack
    await ws.send_str('422["chat:sync",{"rooms":{}}]')
    assert json.loads((await ws.receive_str(timeout=5))[3:])[0]["ok"] is True
    await ws.close()


async def test_an_invalid_packet_on_an_upgraded_websocket_closes_it_cleanly(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """Long-polling, upgraded to WebSocket, then a packet no Engine.IO type starts: the
    client gets a close frame (1002), never an HTTP error written into the WebSocket."""
    async with http.get(server.url + "/socket.io/?EIO=4&transport=polling") as answer:
        sid = json.loads((await answer.text())[1:])["sid"]
    ws = await http.ws_connect(server.url + f"/socket.io/?EIO=4&transport=websocket&sid={sid}")
    await ws.send_str("2probe")
    assert await ws.receive_str(timeout=5) == "3probe"
    await ws.send_str("5")  # the upgrade
    await ws.send_str("x is no packet type")
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE, closing
    assert closing.data == 1002
    # The node goes on serving others.
    status, _, _ = await server.api.call("GET", "/healthz")
    assert status == 200


async def test_a_request_without_a_known_transport_or_with_a_bad_method_is_400(
    server: Running, http: aiohttp.ClientSession
) -> None:
    for query in ("EIO=4", "EIO=4&transport=tobi", "EIO=4&transport=constructor"):
        async with http.get(server.url + "/socket.io/?" + query) as answer:
            assert answer.status == 400, query
            assert await answer.json() == {"code": 0, "message": "Transport unknown"}
    for method in ("PUT", "DELETE", "PATCH"):
        async with http.request(
            method, server.url + "/socket.io/?EIO=4&transport=polling"
        ) as answer:
            assert answer.status == 400, method
            assert await answer.json() == {"code": 2, "message": "Bad handshake method"}


async def test_an_oversize_polling_post_is_413_and_the_session_goes_on(
    server: Running, http: aiohttp.ClientSession
) -> None:
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    async with http.get(base) as answer:
        sid = json.loads((await answer.text())[1:])["sid"]
    session = f"{base}&sid={sid}"
    too_big = "4" + "x" * (64 * 1024 + 1)  # past the node's LIFELINE_MAX_PAYLOAD_BYTES
    # An answer, and at once (python-engineio used to leave it unanswered).
    async with http.post(session, data=too_big, timeout=aiohttp.ClientTimeout(total=5)) as answer:
        assert answer.status == 413
    # The same session still works: connect to /live through it and hear back.
    async with http.post(session, data="40/live,") as answer:
        assert answer.status == 200 and (await answer.text()).lower() == "ok"
    async with http.get(session) as answer:
        assert answer.status == 200
        assert (await answer.text()).startswith("40/live,{")


async def test_a_second_concurrent_poll_closes_the_session(
    server: Running, http: aiohttp.ClientSession
) -> None:
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    async with http.get(base) as answer:
        sid = json.loads((await answer.text())[1:])["sid"]
    session = f"{base}&sid={sid}"
    async with http.post(session, data="40/live,") as answer:
        assert answer.status == 200
    async with http.get(session) as answer:
        assert (await answer.text()).startswith("40/live,{")

    # Two GETs of one session at once: whichever the node sees second is refused,
    # and the session is closed, so the first gets the close packet at once.
    answers = sorted(await asyncio.gather(poll_once(http, session), poll_once(http, session)))
    assert answers[0] == (200, "1")
    assert answers[1][0] == 400
    assert json.loads(answers[1][1]) == {"code": 3, "message": "Bad request"}
    async with http.get(session) as answer:  # the session is gone
        assert answer.status == 400


async def poll_once(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as answer:
        return answer.status, await answer.text()


async def test_a_session_that_never_connects_a_namespace_is_closed_after_the_connect_timeout(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """Node's socket.io closes it after 45 s (connectTimeout); so does Lifeline, after
    LIFELINE_CONNECT_TIMEOUT_S. A session that connects in time is left alone."""
    server = await make_server(limits=LimitSettings(connect_timeout_s=0.5))
    account = await server.api.register()
    idle = await _raw(http, server.url)
    polling_sid = await _polling_handshake(http, server.url)
    connected = await _raw(http, server.url)
    await connected.send_str("40" + json.dumps({"token": account.access_token}))
    assert (await connected.receive_str(timeout=5)).startswith("40{")

    # The idle WebSocket gets Engine.IO's close packet, then the close frame, at once.
    assert await idle.receive_str(timeout=5) == "1"
    closed = await idle.receive(timeout=2)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed
    # The polling session is gone: its next poll is refused as an unknown session.
    url = server.url + f"/socket.io/?EIO=4&transport=polling&sid={polling_sid}"
    async with http.get(url) as answer:
        assert answer.status == 400
    # The connected one is not touched, well past the timeout.
    await connected.send_str('421["chat:sync",{"rooms":{}}]')
    assert json.loads((await connected.receive_str(timeout=5))[3:])[0]["ok"] is True
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert 'lifeline_connections_refused_total{reason="connect_timeout"} 2.0' in metrics
    await connected.close()


async def _polling_handshake(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/socket.io/?EIO=4&transport=polling") as answer:
        opened = await answer.text()
    assert opened.startswith("0{")
    return str(json.loads(opened[1:])["sid"])


async def _polling_live(http: aiohttp.ClientSession, url: str) -> str:
    """A long-polling session connected to /live; returns its URL."""
    base = url + "/socket.io/?EIO=4&transport=polling"
    session = f"{base}&sid={await _polling_handshake(http, url)}"
    async with http.post(session, data="40/live,") as answer:
        assert answer.status == 200
    async with http.get(session) as answer:
        assert (await answer.text()).startswith("40/live,{")
    return session


async def test_an_invalid_polling_body_is_400_and_ends_the_session(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """Engine.IO: a payload that does not decode is an error, and the session ends
    (python-engineio answered 200 and let it live on)."""
    for body in (b"x is no packet type", b"\xff\xfe not UTF-8", b"b!!! not base64", b""):
        session = await _polling_live(http, server.url)
        async with http.post(session, data=body) as answer:
            assert answer.status == 400, body
            assert await answer.json() == {"code": 3, "message": "Bad request"}
        async with http.get(session) as answer:
            assert answer.status == 400, body  # the session is gone
            assert await answer.json() == {"code": 1, "message": "Session ID unknown"}


async def test_a_client_close_answers_the_pending_poll_at_once(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """The engine.io protocol suite's forced close: a GET waits, the client POSTs the
    close packet; the GET is answered with a noop at once (python-engineio answered it
    only at the next ping, 25 s on), and the session is gone."""
    session = await _polling_live(http, server.url)
    pending = asyncio.ensure_future(poll_once(http, session))
    await asyncio.sleep(0)  # the GET is on its way before the close
    async with http.post(session, data="1") as answer:
        assert answer.status == 200
    assert await asyncio.wait_for(pending, 5) == (200, "6")
    async with http.get(session) as answer:
        assert answer.status == 400


async def test_a_session_past_its_ping_timeout_is_closed_on_time(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """A client that stops answering pings is gone pingTimeout after the ping, on
    long-polling and on WebSocket (python-engineio let a polling one live up to 20 s
    more)."""
    interval, timeout = 0.3, 0.5
    server = await make_server(
        limits=LimitSettings(ping_interval_s=interval, ping_timeout_s=timeout)
    )
    session = await _polling_live(http, server.url)
    assert await poll_once(http, session) == (200, "2")  # the ping, left unanswered
    pinged = time.monotonic()
    # The next GET waits, and ends when the session does.
    status, text = await poll_once(http, session)
    assert (status, text) in ((200, "6"), (200, "1")), (status, text)
    assert time.monotonic() - pinged < timeout + 1.0
    assert (await poll_once(http, session))[0] == 400

    ws = await http.ws_connect(server.url + "/socket.io/?EIO=4&transport=websocket")
    assert (await ws.receive_str(timeout=5)).startswith("0{")
    await ws.send_str("40/live,")
    assert (await ws.receive_str(timeout=5)).startswith("40/live,{")
    assert await ws.receive_str(timeout=5) == "2"
    pinged = time.monotonic()
    closing = await ws.receive(timeout=timeout + 1.0)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
    assert time.monotonic() - pinged < timeout + 1.0
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert 'lifeline_sockets_connected{namespace="/live"} 0.0' in metrics


async def test_an_invalid_socketio_packet_closes_the_connection_at_once(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """The Socket.IO suite's invalid handshake ("4abc"): the connection is closed, at
    once (python-engineio left it open until the ping timeout)."""
    ws = await _raw(http, server.url)
    await ws.send_str("4abc")
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE, closing
    assert closing.data == 1002
    session = await _polling_live(http, server.url)
    async with http.post(session, data="4abc") as answer:
        assert answer.status == 200  # the payload is Engine.IO; its Socket.IO packet is not
    async with http.get(session) as answer:
        assert answer.status in (200, 400)
        if answer.status == 200:
            assert await answer.text() in ("6", "1")
    assert (await poll_once(http, session))[0] == 400
    status, _, _ = await server.api.call("GET", "/healthz")
    assert status == 200


async def test_a_websocket_message_over_the_payload_limit_closes_with_1009(
    server: Running, http: aiohttp.ClientSession
) -> None:
    ws = await _raw(http, server.url)
    await ws.send_str("4" + "x" * (64 * 1024 + 1))  # past LIFELINE_MAX_PAYLOAD_BYTES
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE, closing
    assert closing.data == 1009  # "message too big"


async def test_sessions_count_against_the_address_limit_from_their_first_request(
    make_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """Handshakes alone use up an address's connection budget: a session that never
    connects a namespace is no free way around it. The refusal reaches the client as
    the contract's connect_error when it connects a namespace."""
    server = await make_server(limits=LimitSettings(connections_per_address=3))
    idle = [await _polling_handshake(http, server.url) for _ in range(3)]
    assert len(set(idle)) == 3
    ws = await _raw(http, server.url)
    await ws.send_str("40/live,")
    refused = await ws.receive_str(timeout=5)
    assert refused.startswith("44/live,"), refused
    assert json.loads(refused[len("44/live,") :])["message"] == "rate_limited"
    await ws.close()


async def test_a_poll_whose_client_went_away_is_replaced_by_the_next(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """A GET the client dropped (a timeout, a flaky network) is no second concurrent
    GET: the client's next one takes its place and gets what was waiting."""
    session = await _polling_live(http, server.url)
    engine = engine_of(server.app[SOCKETIO])
    sid = session.rsplit("sid=", 1)[1]
    async with aiohttp.ClientSession() as other:
        dropped = asyncio.ensure_future(poll_once(other, session))
        while engine.sockets[sid].poll is None:  # the node holds the GET
            await asyncio.sleep(0.01)
        dropped.cancel()  # the client closes that connection
    status, _, _ = await server.api.call("GET", "/healthz")
    assert status == 200
    async with http.post(session, data='42/live,1["live:subscribe",{"project_id":"p"}]') as a:
        assert a.status == 200
    status, text = await poll_once(http, session)
    assert status == 200 and text.startswith("43/live,1"), text
