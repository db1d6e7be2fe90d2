"""The one module that relies on private parts of python-socketio, python-engineio
or aiohttp. Nothing else in Lifeline touches an attribute of theirs that begins
with ``_`` (tests/test_seam.py checks the source, and that what is relied on here
is still there).

What is relied on, and since when:

- ``socketio.AsyncServer._engineio_server_class``: the method python-socketio's
  base server calls in its constructor for the class of its Engine.IO server
  (python-socketio 5.0 and every 5.x since). Overriding it is how Lifeline's own
  Engine.IO layer (``realtime/engine.py``) goes under python-socketio, which is
  otherwise used through its public API only.

If an upgrade renames it, ``tests/test_seam.py`` fails before anything else
does: a server built here must have Lifeline's engine.
"""

from __future__ import annotations

from typing import Any

import socketio

from realtime.engine import Engine

__all__ = ["SocketServer", "engine_of"]


class SocketServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server on Lifeline's Engine.IO layer."""

    def _engineio_server_class(self) -> type[Engine]:
        return Engine


def engine_of(server: Any) -> Engine:
    """The engine of a ``SocketServer`` (its public ``eio`` attribute), typed."""
    engine = server.eio
    if not isinstance(engine, Engine):
        raise TypeError(
            "python-socketio no longer builds its engine through _engineio_server_class; "
            "see realtime/seam.py"
        )
    return engine
