"""How a node listens: one TCP port, whose connections start with Lifeline's
Engine.IO front door (``realtime.engine.Connection``) and go to aiohttp for
everything that is not a WebSocket of an Engine.IO path.

``Listener`` is what the CLI runs and what the tests start, so both serve the
same way; ``run`` adds signals and aiohttp's graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable

from aiohttp import web

from realtime.engine import ENGINES, Connection

__all__ = ["Listener", "run"]


class Listener:
    """An aiohttp application served on ``host:port``."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        *,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
        )
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        runner = self._runner
        await runner.setup()
        aiohttp_protocol = runner.server
        assert aiohttp_protocol is not None
        engines = {engine.path: engine for engine in self.app.get(ENGINES, [])}
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Connection(engines, aiohttp_protocol),
            self.host,
            self.port,
            reuse_address=True,
            backlog=1024,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, then aiohttp's shutdown: the app's on_shutdown (the socket
        door drains and drops its sockets), open requests, on_cleanup."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._runner.cleanup()


def run(app: Awaitable[web.Application], host: str, port: int, *, shutdown_timeout: float) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully."""

    async def main() -> None:
        listener = Listener(await app, host, port, shutdown_timeout=shutdown_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(number, stop.set)
        await listener.start()
        try:
            await stop.wait()
        finally:
            await listener.close()

    asyncio.run(main())
