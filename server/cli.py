"""``lifeline`` / ``python -m server``: start one node."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from server.embedded_pg import EmbeddedPostgres
from server.logs import configure_logging
from server.settings import DEV_API_KEY, Settings, SettingsError

__all__ = ["main"]

log = logging.getLogger("lifeline")


def _dev_jwt_secret(data_dir: Path) -> str:
    """Generated once and kept in the data folder, so tokens survive a restart."""
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline", description="Start a Lifeline node.")
    parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"lifeline: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.node_id)
    if not settings.auth.jwt_secret:
        settings = settings.with_auth(jwt_secret=_dev_jwt_secret(settings.data_dir))
    embedded: EmbeddedPostgres | None = None
    if not settings.database_url:
        embedded = EmbeddedPostgres(settings.embedded_pg_dir)
        settings = replace(settings, database_url=embedded.start())
    from server.app import create_app  # after logging is set up

    try:
        app = create_app(settings)
        url = f"http://{settings.host}:{settings.port}"
        print(f"Lifeline {settings.node_id} listening on {url}", flush=True)
        if settings.api_key == DEV_API_KEY:
            print(f"development API key (X-Api-Key): {DEV_API_KEY}", flush=True)
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout_s,
            print=None,
            access_log=None,
            handle_signals=True,
        )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0
