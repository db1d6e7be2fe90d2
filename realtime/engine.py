"""Lifeline's Engine.IO v4 server: the transport under python-socketio.

python-socketio stays the Socket.IO implementation (namespaces, packets, acks,
handlers). Beneath it this module speaks Engine.IO v4 (the protocol document of
socketio/engine.io-protocol): the handshake, long-polling, WebSocket, the upgrade
from one to the other, the heartbeat, the payload limit and the errors, with the
interface python-socketio expects of its engine (``realtime/seam.py`` plugs it in).

Why not python-engineio: a socket there costs a writer task, a queue and aiohttp's
WebSocket objects (about 35 KB of a node's memory per idle connection, against
Node's 19 KB); its handshake path took most of a connect's CPU; and several of the
protocol's answers differ (see tests/test_protocol.py). Here:

- A WebSocket that opens straight on ``transport=websocket`` never reaches aiohttp:
  ``Connection`` reads the request head, answers the upgrade and then parses the
  frames itself, as the protocol of the TCP connection (no task, no queue; a burst
  of incoming packets runs on a task that ends when the burst does). Anything else
  on the port is handed to aiohttp's own protocol, unchanged.
- Long-polling (and a WebSocket upgrade on a connection aiohttp already owns) goes
  through an aiohttp route, with the same sessions.
- ``broadcast`` writes one pre-built frame to every socket of a room: the fan-out's
  fast path, a public method here rather than a reach into an engine's internals.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import WSMsgType, hdrs, web

__all__ = ["ENGINES", "Connection", "Engine", "Reason", "ws_frame"]

log = logging.getLogger(__name__)

ENGINES = web.AppKey("lifeline.engines", list["Engine"])

# Engine.IO v4 packet types.
OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0123456"
SEPARATOR = "\x1e"
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16 * 1024  # bytes of a request head the front door reads before handing over
_HEAD_TIMEOUT_S = 60.0  # for the first request head to arrive (Node's headersTimeout)
_FRAGMENT_COST = 64  # bytes a WebSocket fragment counts for, beyond its payload, against the limit


class Reason:
    """Why a session ended, in python-engineio's words (python-socketio passes them on)."""

    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


def ws_frame(payload: str | bytes) -> bytes:
    """One final, unmasked, uncompressed WebSocket frame, server to client:
    text for ``str``, binary for ``bytes``."""
    if isinstance(payload, str):
        opcode, data = 0x81, payload.encode()
    else:
        opcode, data = 0x82, payload
    size = len(data)
    if size < 126:
        return bytes((opcode, size)) + data
    if size < 65536:
        return bytes((opcode, 126)) + size.to_bytes(2, "big") + data
    return bytes((opcode, 127)) + size.to_bytes(8, "big") + data


def _close_frame(code: int) -> bytes:
    return bytes((0x88, 2)) + code.to_bytes(2, "big")


def _unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return data
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


def _error(status: int, code: int, message: str) -> web.Response:
    """An Engine.IO error answer, as Node's engine.io gives it (and its clients read)."""
    return web.Response(
        status=status,
        body=orjson.dumps({"code": code, "message": message}),
        content_type="application/json",
    )


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_UNKNOWN_TRANSPORT = _Refused(400, 0, "Transport unknown")
_UNKNOWN_SESSION = _Refused(400, 1, "Session ID unknown")
_BAD_HANDSHAKE_METHOD = _Refused(400, 2, "Bad handshake method")
_BAD_REQUEST = _Refused(400, 3, "Bad request")
_FORBIDDEN = _Refused(403, 4, "Forbidden")
_UNSUPPORTED = _Refused(400, 5, "Unsupported protocol version")


# -- links: what carries a session's packets ------------------------------------------------


class _Link:
    """A WebSocket under a session: frames out, close, and how much is unsent."""

    __slots__ = ()

    def write(self, frame: bytes) -> None:
        raise NotImplementedError

    def buffered(self) -> int:
        raise NotImplementedError

    def close(self, code: int) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Connection(asyncio.Protocol, _Link):
    """A TCP connection on the node's port, from its first byte.

    It reads the first request head. A WebSocket upgrade to an Engine.IO path is
    answered here, and the connection then carries that session's frames, parsed
    here; anything else is handed to aiohttp's protocol with the bytes read so far.
    """

    __slots__ = (
        "_aiohttp",
        "_buffer",
        "_engines",
        "_fragmented",
        "_fragments",
        "_opcode",
        "_socket",
        "_timer",
        "_transport",
    )

    def __init__(self, engines: dict[str, Engine], aiohttp_protocol: Callable[[], Any]) -> None:
        self._engines = engines
        self._aiohttp = aiohttp_protocol
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._socket: EngineSocket | None = None
        self._fragments: list[bytes] | None = None
        self._fragmented = 0
        self._opcode = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(_HEAD_TIMEOUT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._socket is not None:
            self._frames(data)
            return
        buffer = self._buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._hand_over(buffer)
            else:
                self._buffer = buffer
            return
        self._buffer = b""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        head = buffer[:end].decode("latin-1")
        engine, query, headers = self._ours(head)
        if engine is None:
            self._hand_over(buffer)
            return
        assert self._transport is not None
        try:
            socket = engine.open_websocket(self, query, headers, self._transport)
        except _Refused as refused:
            body = orjson.dumps({"code": refused.code, "message": refused.message})
            self._transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s"
                % (
                    refused.status,
                    b"Forbidden" if refused.status == 403 else b"Bad Request",
                    len(body),
                    body,
                )
            )
            self._transport.close()
            return
        self._socket = socket
        rest = buffer[end + 4 :]
        if rest:
            self._frames(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.link_lost(self)

    # -- the first request

    def _ours(self, head: str) -> tuple[Engine | None, dict[str, str], dict[str, str]]:
        line, _, rest = head.partition("\r\n")
        method, _, target = line.partition(" ")
        target = target.rpartition(" ")[0]
        if method != "GET" or "transport=websocket" not in target:
            return None, {}, {}
        parts = urlsplit(target)
        engine = self._engines.get(parts.path)
        if engine is None:
            return None, {}, {}
        headers: dict[str, str] = {}
        for field in rest.split("\r\n"):
            name, _, value = field.partition(":")
            key = name.strip().lower()
            headers[key] = headers[key] + ", " + value.strip() if key in headers else value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            return None, {}, {}
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return engine, query, headers

    def _hand_over(self, buffer: bytes) -> None:
        """aiohttp takes the connection from here, as if it had read every byte itself."""
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        protocol = self._aiohttp()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if buffer:
            protocol.data_received(buffer)

    # -- WebSocket frames (RFC 6455, client to server: always masked)

    def _frames(self, data: bytes) -> None:
        socket = self._socket
        assert socket is not None
        buffer = self._buffer + data if self._buffer else data
        pos, size = 0, len(buffer)
        limit = socket.engine.max_payload
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if not second & 0x80 or first & 0x70:
                self._fail(1002)  # unmasked, or an extension nobody agreed to
                return
            if length > limit:
                self._fail(1009)
                return
            end = start + 4 + length
            if size < end:
                break
            payload = _unmask(buffer[start + 4 : end], buffer[start : start + 4])
            pos = end
            if not self._frame(first & 0x80, first & 0x0F, payload, limit):
                return
        self._buffer = buffer[pos:] if pos < size else b""

    def _frame(self, fin: int, opcode: int, payload: bytes, limit: int) -> bool:
        socket = self._socket
        assert socket is not None and self._transport is not None
        if opcode >= 0x8:  # control frames: never fragmented, at most 125 bytes
            if not fin or len(payload) > 125:
                self._fail(1002)
                return False
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
                self._transport.write(_close_frame(code if 1000 <= code < 5000 else 1000))
                self._transport.close()
                self._socket = None
                socket.link_lost(self)
                return False
            if opcode == 0x9:
                self._transport.write(bytes((0x8A, len(payload))) + payload)
            elif opcode != 0xA:
                self._fail(1002)
                return False
            return True
        if opcode == 0x0:
            if self._fragments is None:
                self._fail(1002)
                return False
            self._fragments.append(payload)
            self._fragmented += len(payload) + _FRAGMENT_COST
            if self._fragmented > limit:
                # Counted with a cost per fragment, so empty ones cannot grow the
                # list (and the time to join it) without bound.
                self._fail(1009)
                return False
            if not fin:
                return True
            payload, opcode = b"".join(self._fragments), self._opcode
            self._fragments = None
        elif opcode in (0x1, 0x2):
            if self._fragments is not None:
                self._fail(1002)
                return False
            if not fin:
                self._fragments, self._opcode = [payload], opcode
                self._fragmented = len(payload) + _FRAGMENT_COST
                return True
        else:
            self._fail(1002)
            return False
        if opcode == 0x1:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                self._fail(1007)
                return False
            socket.ws_received(self, text)
        else:
            socket.ws_received(self, payload)
        return self._socket is not None

    def _fail(self, code: int) -> None:
        self.close(code)

    # -- _Link

    def write(self, frame: bytes) -> None:
        if self._transport is not None:
            self._transport.write(frame)

    def buffered(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def close(self, code: int) -> None:
        transport, socket = self._transport, self._socket
        self._socket = None
        if transport is not None and not transport.is_closing():
            transport.write(_close_frame(code))
            transport.close()
        if socket is not None:
            socket.link_lost(self)

    def abort(self) -> None:
        socket, self._socket = self._socket, None
        if self._transport is not None:
            self._transport.abort()
        if socket is not None:
            socket.link_lost(self)


class _AiohttpLink(_Link):
    """A WebSocket upgrade that arrived on a connection aiohttp already served
    (a client reusing a kept-alive polling connection): aiohttp reads the frames;
    frames out go to the same TCP transport, whole, as ``Connection`` writes them."""

    __slots__ = ("transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport) -> None:
        self.ws = ws
        self.transport: Any = transport

    def write(self, frame: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(frame)

    def buffered(self) -> int:
        return int(self.transport.get_write_buffer_size())

    def close(self, code: int) -> None:
        if not self.transport.is_closing():
            self.transport.write(_close_frame(code))
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()


# -- sessions ---------------------------------------------------------------------------------

_CONNECT, _MESSAGE, _DISCONNECT = 0, 1, 2


class EngineSocket:
    """One Engine.IO session: its transport, heartbeat and packets in and out."""

    __slots__ = (
        "candidate",
        "closed",
        "engine",
        "environ",
        "inbox",
        "link",
        "opened_at",
        "outbox",
        "poll",
        "poller",
        "session",
        "sid",
        "task",
        "timer",
        "waiting_pong",
    )

    def __init__(self, engine: Engine, sid: str, environ: dict[str, Any]) -> None:
        self.engine = engine
        self.sid = sid
        self.environ = environ
        self.session: dict[str, Any] | None = None
        self.link: _Link | None = None  # the WebSocket, once it carries the session
        self.candidate: _Link | None = None  # a WebSocket probing to take over polling
        self.outbox: list[str | bytes] = []  # polling: packets the next GET takes
        self.poll: asyncio.Future[bool] | None = None  # polling: the GET waiting
        self.poller: Any = None  # ... and its connection
        # Packets for python-socketio, in order; made when a burst comes, dropped after.
        self.inbox: deque[tuple[int, Any]] | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.waiting_pong = False
        self.closed = False
        self.opened_at = time.monotonic()

    @property
    def transport_name(self) -> str:
        return "polling" if self.link is None else "websocket"

    # -- out

    def send(self, packet: str | bytes) -> None:
        """One Engine.IO packet: ``str`` with its type digit, ``bytes`` a binary message."""
        if self.closed:
            return
        link = self.link
        if link is not None:
            link.write(ws_frame(packet))
            if link.buffered() > self.engine.max_buffered:
                self.engine.cut(self)
            return
        self.outbox.append(packet)
        if len(self.outbox) > self.engine.max_queued:
            self.engine.cut(self)
            return
        self._wake_poll()

    def _wake_poll(self) -> None:
        poll = self.poll
        if poll is not None and not poll.done():
            poll.set_result(True)

    def take_outbox(self) -> list[str | bytes]:
        packets, self.outbox = self.outbox, []
        return packets

    # -- in

    def received(self, packet: str | bytes) -> bool:
        """A packet from the client; False if it broke the protocol (the caller closes)."""
        if isinstance(packet, bytes):
            self._push(_MESSAGE, packet)
            return True
        kind = packet[:1]
        if kind == MESSAGE:
            self._push(_MESSAGE, packet[1:])
        elif kind == PONG:
            self._pong()
        elif kind == CLOSE:
            self.close(Reason.CLIENT_DISCONNECT, send_close=False)
        elif kind in (PING, NOOP):
            pass  # v4 clients do not ping; tolerated, as Node does
        else:
            return False
        return True

    def ws_received(self, link: _Link, packet: str | bytes) -> None:
        if link is self.link:
            if not self.received(packet):
                self.engine.invalid(self, link)
            return
        if link is not self.candidate:
            return
        # The upgrade (protocol, "Upgrade"): probe, then the switch.
        if packet == PING + "probe":
            link.write(ws_frame(PONG + "probe"))
            self.outbox.append(NOOP)  # the pending GET returns, so polling pauses
            self._wake_poll()
        elif packet == UPGRADE:
            self.candidate, self.link = None, link
            left = [p for p in self.take_outbox() if p != NOOP]
            self._wake_poll()  # a GET still waiting ends with a noop
            for queued in left:
                link.write(ws_frame(queued))
        else:
            self.candidate = None
            link.close(1002)

    def link_lost(self, link: _Link) -> None:
        if link is self.candidate:
            self.candidate = None
        elif link is self.link and not self.closed:
            self.close(Reason.TRANSPORT_CLOSE, send_close=False)

    def _push(self, kind: int, value: Any) -> None:
        if self.inbox is None:
            self.inbox = deque()
        self.inbox.append((kind, value))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        engine = self.engine
        try:
            while self.inbox:
                kind, value = self.inbox.popleft()
                if not self.inbox:
                    self.inbox = None
                if kind == _MESSAGE:
                    if self.closed:
                        continue
                    try:
                        await engine.handlers["message"](self.sid, value)
                    except Exception:
                        # python-socketio raises on a packet it cannot decode: the
                        # protocol's answer is to close the connection.
                        log.warning("closing a session that sent an invalid packet", exc_info=True)
                        engine.invalid(self, self.link)
                elif kind == _CONNECT:
                    await engine.opened(self)
                else:
                    await engine.handlers["disconnect"](self.sid, value)
        except Exception:
            log.exception("an Engine.IO event handler failed")
        finally:
            self.task = None
            if self.inbox:  # pushed while the last handler finished
                self.task = asyncio.get_running_loop().create_task(self._run())

    # -- heartbeat

    def start_heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.engine.ping_interval, self._ping)

    def _ping(self) -> None:
        if self.closed:
            return
        self.waiting_pong = True
        self.send(PING)
        self.timer = asyncio.get_running_loop().call_later(
            self.engine.ping_timeout, self._ping_timeout
        )

    def _ping_timeout(self) -> None:
        if self.waiting_pong and not self.closed:
            self.close(Reason.PING_TIMEOUT, send_close=False)

    def _pong(self) -> None:
        if not self.waiting_pong:
            return
        self.waiting_pong = False
        if self.timer is not None:
            self.timer.cancel()
        self.start_heartbeat()

    # -- end

    def close(self, reason: str, *, send_close: bool = True, abort: bool = False) -> None:
        """End the session: the client hears the close packet (unless ``send_close``
        is False or ``abort``), the transport ends, python-socketio hears of it."""
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.engine.forget(self)
        link, candidate = self.link, self.candidate
        self.link = self.candidate = None
        if candidate is not None:
            candidate.abort() if abort else candidate.close(1000)
        if link is not None:
            if abort:
                link.abort()
            else:
                if send_close:
                    link.write(ws_frame(CLOSE))
                link.close(1000)
        else:
            self.outbox = [CLOSE] if send_close and not abort else []
            self._wake_poll()
        if self.inbox:  # what python-socketio has not heard yet is moot, but its connect
            self.inbox = deque(item for item in self.inbox if item[0] == _CONNECT)
        self._push(_DISCONNECT, reason)


# -- the engine -------------------------------------------------------------------------------

OpenHook = Callable[[dict[str, Any]], Awaitable[None]]


class Engine:
    """The Engine.IO server one python-socketio server runs on.

    The constructor takes the options python-socketio passes to its engine
    (``ping_interval``, ``ping_timeout``, ``max_http_buffer_size``,
    ``cors_allowed_origins``, ...); the methods down to ``shutdown`` are the ones
    python-socketio calls. The rest is Lifeline's: ``broadcast``, ``sessions``,
    ``close``, ``drop_all``, ``on_open`` and the limits of slow readers.
    """

    async_mode = "aiohttp"

    def __init__(
        self,
        *,
        ping_interval: float = 25,
        ping_timeout: float = 20,
        max_http_buffer_size: int = 1_000_000,
        cors_allowed_origins: str | list[str] | None = None,
        **_: Any,
    ) -> None:
        self.ping_interval = float(ping_interval)
        self.ping_timeout = float(ping_timeout)
        self.max_payload = int(max_http_buffer_size)
        self.cors = cors_allowed_origins
        self.max_queued = 1000
        self.max_buffered = 4 * 1024 * 1024
        self.on_cut: Callable[[], None] = lambda: None
        self.handlers: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.sockets: dict[str, EngineSocket] = {}
        self.path = "/engine.io/"
        self._open_hooks: list[OpenHook] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what python-socketio calls

    def on(self, event: str, handler: Callable[..., Awaitable[Any]] | None = None) -> Any:
        if handler is None:
            return lambda h: self.on(event, h)
        self.handlers[event] = handler
        return handler

    def attach(self, app: web.Application, engineio_path: str = "engine.io") -> None:
        self.path = "/" + engineio_path.strip("/") + "/"
        app.router.add_route("*", self.path, self.handle_request)
        if ENGINES not in app:
            app[ENGINES] = []
        app[ENGINES].append(self)

    def generate_id(self) -> str:
        return secrets.token_urlsafe(15)

    def transport(self, sid: str) -> str:
        return self.sockets[sid].transport_name

    async def send(self, sid: str, data: str | bytes) -> None:
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.send(data if isinstance(data, bytes) else MESSAGE + data)

    async def send_packet(self, sid: str, packet: Any) -> None:
        """An Engine.IO packet object (python-socketio's manager builds MESSAGE ones)."""
        if packet.packet_type == 4:
            await self.send(sid, packet.data)

    async def get_session(self, sid: str) -> dict[str, Any]:
        socket = self.sockets.get(sid)
        if socket is None:
            raise KeyError("Session not found")
        if socket.session is None:
            socket.session = {}
        return socket.session

    async def save_session(self, sid: str, session: dict[str, Any]) -> None:
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.session = session

    async def disconnect(self, sid: str | None = None) -> None:
        if sid is None:
            await self.shutdown()
            return
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.close(Reason.SERVER_DISCONNECT)

    async def shutdown(self) -> None:
        for socket in list(self.sockets.values()):
            socket.close(Reason.SERVER_DISCONNECT)

    def create_event(self) -> asyncio.Event:
        return asyncio.Event()

    def create_queue(self, *args: Any, **kwargs: Any) -> asyncio.Queue[Any]:
        return asyncio.Queue(*args, **kwargs)

    def start_background_task(
        self, target: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(target(*args, **kwargs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    # -- Lifeline's

    def on_open(self, hook: OpenHook) -> None:
        """Runs on a session's first request, before python-socketio hears of it, with
        the session's environ (where it may leave what a namespace's connect reads)."""
        self._open_hooks.append(hook)

    def sessions(self) -> list[tuple[str, float]]:
        """(sid, monotonic time it opened) of every open session."""
        return [(sid, s.opened_at) for sid, s in self.sockets.items()]

    def close(self, sid: str, *, abort: bool = False) -> None:
        """End a session now: the close packet and a close frame, or with ``abort``
        the transport dropped without a word (a client then reconnects)."""
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.close(Reason.SERVER_DISCONNECT, abort=abort)

    def drop_all(self) -> None:
        for socket in list(self.sockets.values()):
            socket.close(Reason.TRANSPORT_CLOSE, abort=True)

    def broadcast(self, sids: Iterable[str], packet: str | bytes) -> int:
        """One Engine.IO MESSAGE (``str`` without its type digit, or binary ``bytes``)
        to every session in ``sids``: the WebSocket frame is built once and written to
        each transport as it is. Returns how many sessions it reached."""
        eio_packet: str | bytes = packet if isinstance(packet, bytes) else MESSAGE + packet
        frame: bytes | None = None
        sockets = self.sockets
        reached = 0
        for sid in sids:
            socket = sockets.get(sid)
            if socket is None:
                continue
            link = socket.link
            if link is None:
                socket.send(eio_packet)
            else:
                if frame is None:
                    frame = ws_frame(eio_packet)
                link.write(frame)
                if link.buffered() > self.max_buffered:
                    self.cut(socket)
                    continue
            reached += 1
        return reached

    def cut(self, socket: EngineSocket) -> None:
        """A client that stopped reading: cut off rather than buffer without bound."""
        log.warning("cutting off a socket that does not read", extra={"sid": socket.sid})
        self.on_cut()
        socket.close(Reason.TRANSPORT_ERROR, abort=True)

    def invalid(self, socket: EngineSocket, link: _Link | None) -> None:
        """The client broke the protocol: a WebSocket ends with 1002 (protocol error)."""
        if link is not None and link is socket.link:
            socket.link = None
            link.close(1002)
        socket.close(Reason.TRANSPORT_ERROR, send_close=False)

    def forget(self, socket: EngineSocket) -> None:
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]

    async def opened(self, socket: EngineSocket) -> None:
        try:
            for hook in self._open_hooks:
                await hook(socket.environ)
        except Exception:
            log.exception("an Engine.IO open hook failed")
        await self.handlers["connect"](socket.sid, socket.environ)

    # -- requests

    def _open(self, environ: dict[str, Any]) -> EngineSocket:
        socket = EngineSocket(self, self.generate_id(), environ)
        self.sockets[socket.sid] = socket
        socket._push(_CONNECT, None)
        socket.start_heartbeat()
        return socket

    def _handshake(self, sid: str, upgrades: list[str]) -> str:
        return (
            OPEN
            + orjson.dumps(
                {
                    "sid": sid,
                    "upgrades": upgrades,
                    "pingInterval": int(self.ping_interval * 1000),
                    "pingTimeout": int(self.ping_timeout * 1000),
                    "maxPayload": self.max_payload,
                }
            ).decode()
        )

    def _check_origin(self, origin: str | None, host: str | None, scheme: str) -> str | None:
        """The origin to allow in CORS headers; raises if it may not connect."""
        if origin is None:
            return None  # native apps send none
        cors = self.cors
        if cors == "*":
            return origin
        if cors is None:
            if host is not None and origin == f"{scheme}://{host}":
                return origin
            raise _FORBIDDEN
        if origin in cors:
            return origin
        raise _FORBIDDEN

    def open_websocket(
        self,
        connection: Connection,
        query: dict[str, str],
        headers: dict[str, str],
        transport: asyncio.Transport,
    ) -> EngineSocket:
        """A WebSocket request read by ``Connection``: checked, answered 101, and the
        session it opens (or the polling session it may take over)."""
        if query.get("EIO") != "4":
            raise _UNSUPPORTED
        scheme = "https" if transport.get_extra_info("sslcontext") is not None else "http"
        scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip()
        self._check_origin(headers.get("origin"), headers.get("host"), scheme)
        key = headers.get("sec-websocket-key", "")
        if headers.get("sec-websocket-version") != "13" or len(key) != 24:
            raise _BAD_REQUEST
        sid = query.get("sid")
        existing = None
        if sid is not None:
            existing = self.sockets.get(sid)
            if existing is None:
                raise _UNKNOWN_SESSION
            if existing.link is not None or existing.candidate is not None:
                raise _BAD_REQUEST
        accept = base64.b64encode(
            hashlib.sha1(key.encode() + _WS_GUID, usedforsecurity=False).digest()
        )
        answer = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        if existing is not None:
            transport.write(answer)
            existing.candidate = connection
            return existing
        peer = transport.get_extra_info("peername")
        environ: dict[str, Any] = {
            "REMOTE_ADDR": peer[0] if isinstance(peer, tuple) else "",
            "QUERY_STRING": "",
        }
        forwarded = headers.get("x-forwarded-for")
        if forwarded is not None:
            environ["HTTP_X_FORWARDED_FOR"] = forwarded
        socket = self._open(environ)
        socket.link = connection
        transport.write(answer + ws_frame(self._handshake(socket.sid, [])))
        return socket

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._request(request)
        except _Refused as refused:
            return _error(refused.status, refused.code, refused.message)

    async def _request(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        transport = query.get("transport")
        if transport not in ("polling", "websocket"):
            raise _UNKNOWN_TRANSPORT
        sid = query.get("sid")
        method = request.method
        if method not in ("GET", "POST", "OPTIONS") or (sid is None and method == "POST"):
            raise _BAD_HANDSHAKE_METHOD if sid is None else _BAD_REQUEST
        if query.get("EIO") != "4":
            raise _UNSUPPORTED
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        origin = self._check_origin(request.headers.get(hdrs.ORIGIN), request.host, scheme)
        if method == "OPTIONS":
            return self._cors(web.Response(status=204), origin, request)
        websocket = transport == "websocket"
        if websocket and request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
            raise _BAD_REQUEST
        if sid is None:
            environ: dict[str, Any] = {"REMOTE_ADDR": request.remote or "", "QUERY_STRING": ""}
            forwarded = request.headers.get(hdrs.X_FORWARDED_FOR)
            if forwarded is not None:
                environ["HTTP_X_FORWARDED_FOR"] = forwarded
            if websocket:
                return await self._aiohttp_websocket(request, None, environ)
            opened = self._open(environ)
            return self._polling_answer(
                [self._handshake(opened.sid, ["websocket"])], origin, request
            )
        socket = self.sockets.get(sid)
        if socket is None:
            raise _UNKNOWN_SESSION
        if websocket:
            if socket.link is not None or socket.candidate is not None:
                raise _BAD_REQUEST
            return await self._aiohttp_websocket(request, socket, None)
        if socket.link is not None:
            raise _BAD_REQUEST  # it went over to WebSocket
        if method == "GET":
            return await self._poll(socket, origin, request)
        return await self._post(socket, origin, request)

    async def _poll(
        self, socket: EngineSocket, origin: str | None, request: web.Request
    ) -> web.StreamResponse:
        waiting = socket.poll
        if waiting is not None:
            if socket.poller is not None and not socket.poller.is_closing():
                # A second GET while one waits: the protocol closes the session;
                # the first gets the close packet, this one an error.
                socket.close(Reason.TRANSPORT_ERROR)
                raise _BAD_REQUEST
            # The GET that waited lost its client (a dropped request the client
            # sends again): this one takes its place, and what waits is kept for it.
            socket.poll = socket.poller = None
            if not waiting.done():
                waiting.set_result(False)
        if not socket.outbox and not socket.closed:
            poll: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            socket.poll, socket.poller = poll, request.transport
            try:
                if not await poll:
                    return web.Response(status=204)  # nobody reads this answer
            finally:
                if socket.poll is poll:
                    socket.poll = socket.poller = None
        packets = socket.take_outbox()
        if not packets:
            packets = [NOOP]  # woken with nothing to say (an upgrade finished)
        return self._polling_answer(packets, origin, request)

    async def _post(
        self, socket: EngineSocket, origin: str | None, request: web.Request
    ) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > self.max_payload:
            return web.Response(status=413, text="Payload Too Large")
        body = bytearray()
        while chunk := await request.content.read(65536):
            body += chunk
            if len(body) > self.max_payload:
                return web.Response(status=413, text="Payload Too Large")
        try:
            packets = bytes(body).decode().split(SEPARATOR)
            decoded: list[str | bytes] = [
                base64.b64decode(p[1:], validate=True) if p[:1] == "b" else p for p in packets
            ]
        except (UnicodeDecodeError, ValueError):
            decoded = []
        if not decoded or any(p == "" for p in decoded):
            socket.close(Reason.TRANSPORT_ERROR)
            raise _BAD_REQUEST
        for packet in decoded:
            if not socket.received(packet):
                socket.close(Reason.TRANSPORT_ERROR)
                raise _BAD_REQUEST
        return self._cors(web.Response(text="ok", content_type="text/html"), origin, request)

    def _polling_answer(
        self, packets: list[str | bytes], origin: str | None, request: web.Request
    ) -> web.Response:
        text = SEPARATOR.join(
            "b" + base64.b64encode(p).decode() if isinstance(p, bytes) else p for p in packets
        )
        response = web.Response(text=text, content_type="text/plain", charset="UTF-8")
        return self._cors(response, origin, request)

    def _cors(
        self, response: web.Response, origin: str | None, request: web.Request
    ) -> web.Response:
        if origin is not None:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
            if request.method == "OPTIONS":
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "OPTIONS, GET, POST"
                asked = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
                if asked:
                    response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = asked
        return response

    async def _aiohttp_websocket(
        self,
        request: web.Request,
        existing: EngineSocket | None,
        environ: dict[str, Any] | None,
    ) -> web.StreamResponse:
        """A WebSocket on a connection aiohttp already owns (the slower path)."""
        ws = web.WebSocketResponse(max_msg_size=self.max_payload, compress=False, autoping=True)
        await ws.prepare(request)
        assert request.transport is not None
        link = _AiohttpLink(ws, request.transport)
        if existing is not None:
            if existing.link is not None or existing.candidate is not None:
                await ws.close(code=1002)
                return ws
            existing.candidate = link
            socket = existing
        else:
            assert environ is not None
            socket = self._open(environ)
            socket.link = link
            link.write(ws_frame(self._handshake(socket.sid, [])))
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    socket.ws_received(link, message.data)
                    if socket.link is not link and socket.candidate is not link:
                        break
                else:
                    break
            if ws.close_code == 1009 or ws.exception() is not None:
                link.close(1009 if ws.close_code == 1009 else 1002)
        finally:
            socket.link_lost(link)
        return ws
