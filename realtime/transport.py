"""WebSocket transport choices the Socket.IO libraries do not expose."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

__all__ = ["contain_engine_failures", "engine_gate", "without_ws_compression"]

log = logging.getLogger(__name__)

# A WebSocket close frame, 1002 "protocol error", server to client (unmasked).
_CLOSE_PROTOCOL_ERROR = bytes((0x88, 0x02)) + (1002).to_bytes(2, "big")


@web.middleware
async def without_ws_compression(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Decline permessage-deflate on Socket.IO WebSockets.

    aiohttp accepts it whenever a client offers it, and python-engineio gives no
    way to say otherwise; it costs about 100 KB of zlib state per connection and
    CPU per frame. Hiding the client's offer makes the handshake go without it.
    """
    if hdrs.SEC_WEBSOCKET_EXTENSIONS in request.headers and request.path.startswith("/socket.io"):
        headers = request.headers.copy()
        del headers[hdrs.SEC_WEBSOCKET_EXTENSIONS]
        request = request.clone(headers=headers)
    return await handler(request)


@web.middleware
async def contain_engine_failures(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Close a WebSocket cleanly when the engine fails on what the client sent over it.

    python-engineio raises out of its WebSocket loop on a packet it cannot decode.
    By then the 101 answer has gone out and the connection carries WebSocket frames:
    an HTTP error answer written there reaches the client as a corrupt frame. So
    the client gets a close frame (1002, protocol error) and the connection ends;
    before the upgrade, errors take the usual way to the contract's error answer.
    """
    try:
        return await handler(request)
    except Exception:
        if not request.path.startswith("/socket.io") or request.writer.output_size == 0:
            raise
        log.warning("closing a WebSocket its engine failed on", exc_info=True)
        transport = request.transport
        if transport is not None and not transport.is_closing():
            transport.write(_CLOSE_PROTOCOL_ERROR)
            transport.close()
        # Nothing more is written: the connection is closing.
        return web.Response(status=400)


_TRANSPORTS = frozenset({"polling", "websocket"})
_ENGINE_METHODS = frozenset({"GET", "POST", "OPTIONS"})


def _engine_error(status: int, code: int, message: str) -> web.Response:
    """An Engine.IO v4 error answer, as Node's engine.io gives it (and its clients read)."""
    return web.Response(
        status=status,
        body=orjson.dumps({"code": code, "message": message}),
        content_type="application/json",
    )


CloseSession = Callable[[str, str], Awaitable[None]]


def engine_gate(*, max_http_buffer_size: int, close_session: CloseSession) -> Middleware:
    """What the Engine.IO protocol refuses before a session is touched.

    python-engineio answers a request without a transport with a handshake, a bad
    method with 405, reads an oversize polling POST until it fails (killing the
    session without an answer), and lets a second GET of a session wait beside the
    first. The protocol (and Node's engine.io) answers 400 for the first two, 413 for
    the third with the session left as it was, and closes the session on the fourth:
    the pending GET gets the close packet, the second one 400.
    ``close_session(path, sid)`` ends a session through the engine's public API.
    """
    polling: set[tuple[str, str]] = set()  # (path, sid) with a GET waiting

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/socket.io"):
            return await handler(request)
        if request.query.get("transport") not in _TRANSPORTS:
            return _engine_error(400, 0, "Transport unknown")
        if request.method not in _ENGINE_METHODS:
            return _engine_error(400, 2, "Bad handshake method")
        length = request.content_length
        if request.method == "POST" and length is not None and length > max_http_buffer_size:
            return web.Response(status=413, text="Payload Too Large")
        sid = request.query.get("sid")
        if request.method != "GET" or sid is None or hdrs.UPGRADE in request.headers:
            return await handler(request)
        key = (request.path, sid)
        if key in polling:
            await close_session(request.path, sid)
            return _engine_error(400, 3, "Bad request")
        polling.add(key)
        try:
            return await handler(request)
        finally:
            polling.discard(key)

    return gate
