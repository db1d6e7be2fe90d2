"""WebSocket transport choices the Socket.IO libraries do not expose."""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

__all__ = ["without_ws_compression"]


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
