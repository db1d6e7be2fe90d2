"""The WebSocket under Engine.IO, spoken frame by frame over a raw TCP connection
(RFC 6455): what clients may send, and what nothing a client sends can do to a node."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
from urllib.parse import urlsplit

import aiohttp

from tests.conftest import Running


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(
        cls, url: str, path: str = "/socket.io/?EIO=4&transport=websocket"
    ) -> RawWebSocket:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> None:
        self.writer.write(frame(opcode, payload, fin=fin, mask=mask))

    async def receive(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload); (-1, b"") once the connection ends."""
        try:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return -1, b""

    async def text(self) -> str:
        opcode, payload = await self.receive()
        assert opcode == 0x1, (opcode, payload)
        return payload.decode()

    async def closed_with(self) -> int | None:
        """Read to the end; the close frame's code, if one came."""
        while True:
            opcode, payload = await self.receive()
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            if opcode == -1:
                return None

    def close(self) -> None:
        self.writer.close()


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes(((0x80 if fin else 0) | opcode,))
    size = len(payload)
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes((bit | size,))
    elif size < 65536:
        head += bytes((bit | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((bit | 127,)) + size.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def _connected(server: Running) -> RawWebSocket:
    ws = await RawWebSocket.open(server.url)
    assert (await ws.text()).startswith("0{")
    ws.send(0x1, b"40/live,")
    assert (await ws.text()).startswith("40/live,{")
    return ws


async def test_fragmented_messages_and_pings_between_them_are_understood(server: Running) -> None:
    ws = await _connected(server)
    message = b'42/live,7["live:subscribe",{"project_id":"fragmented"}]'
    ws.send(0x1, message[:10], fin=False)
    ws.send(0x9, b"are you there")  # a control frame may come between fragments
    ws.send(0x0, message[10:30], fin=False)
    ws.send(0x0, message[30:])
    assert await ws.receive() == (0xA, b"are you there")
    ack = await ws.text()
    assert ack.startswith("43/live,7[") and json.loads(ack[len("43/live,7") :])[0]["ok"]
    ws.send(0x8, (1000).to_bytes(2, "big"))  # the client closes: the node answers in kind
    assert await ws.closed_with() == 1000
    ws.close()


async def test_frames_that_break_the_websocket_protocol_close_with_its_codes(
    server: Running,
) -> None:
    cases = [
        ((0x1, b"40/live,"), {"mask": False}, 1002),  # a client frame must be masked
        ((0x1, b"\xff\xfe"), {}, 1007),  # text that is not UTF-8
        ((0x3, b"x"), {}, 1002),  # a reserved opcode
        ((0x0, b"x"), {}, 1002),  # a continuation with nothing to continue
        ((0x9, b"x" * 126), {}, 1002),  # a control frame over 125 bytes
    ]
    for (opcode, payload), options, code in cases:
        ws = await _connected(server)
        ws.send(opcode, payload, **options)  # type: ignore[arg-type]
        assert await ws.closed_with() == code, (opcode, payload)
        ws.close()


async def test_a_message_in_endless_empty_fragments_is_closed_as_too_big(
    server: Running, http: aiohttp.ClientSession
) -> None:
    ws = await _connected(server)
    ws.send(0x1, b"42/live,", fin=False)
    # Empty continuations carry no bytes, but each costs the node a place in the
    # message being assembled: the payload limit counts them too.
    ws.writer.write(frame(0x0, b"", fin=False) * 2_000)
    assert await ws.closed_with() == 1009
    ws.close()
    async with http.get(server.url + "/healthz") as response:
        assert response.status == 200


async def test_no_bytes_a_client_sends_take_the_node_down(
    server: Running, http: aiohttp.ClientSession
) -> None:
    rng = random.Random(15)
    for _ in range(40):
        ws = await _connected(server)
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        ws.writer.write(junk)
        ws.send(0x1, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200))))
        await ws.writer.drain()
        ws.close()
    # Junk before the upgrade too: aiohttp gets the bytes, and answers them.
    parts = urlsplit(server.url)
    for _ in range(10):
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.read(), 5)  # answered (400) or closed, not hung
        writer.close()
    status, _, _ = await server.api.call("GET", "/healthz")
    assert status == 200
    ws = await _connected(server)  # and sockets still work
    ws.send(0x1, b'42/live,1["live:subscribe",{"project_id":"after"}]')
    assert (await ws.text()).startswith("43/live,1[")
    ws.close()


async def test_events_queued_behind_their_sockets_disconnect_are_dropped_quietly(
    server: Running, http: aiohttp.ClientSession
) -> None:
    """Subscribes sent in the same write as the namespace's disconnect: what python-
    socketio dispatched before the disconnect but runs after it is not served (and
    is no internal error, nor a rate budget left behind for a socket that is gone)."""
    ws = await _connected(server)
    burst = b"".join(
        frame(0x1, b'42/live,%d["live:subscribe",{"project_id":"gone-%d"}]' % (n, n))
        for n in range(1, 51)
    )
    ws.writer.write(burst + frame(0x1, b"41/live,"))
    # The Engine.IO session stays, so the same connection can tell when all were run.
    ws.send(0x1, b"40/live,")
    while not (await ws.text()).startswith("40/live,{"):
        pass
    ws.send(0x1, b'42/live,99["live:subscribe",{"project_id":"after"}]')
    while not (reply := await ws.text()).startswith("43/live,99"):
        pass
    assert '"ok":true' in reply
    ws.close()
    _, metrics, _ = await server.api.call("GET", "/metrics")
    assert 'lifeline_errors_total{code="internal"' not in metrics
