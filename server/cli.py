"""``lifeline`` / ``python -m server``: start one node."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from handlers.docs import ApiDocuments
from server.embedded_pg import EmbeddedPostgres
from server.logs import configure_logging
from server.serving import run
from server.settings import DEV_API_KEY, Settings, SettingsError
from storage.crypto import FieldCipher, parse_keys

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


def _dev_data_key(data_dir: Path) -> tuple[tuple[str, bytes], ...]:
    """Development only, like the JWT secret: one AES-256 key kept in the data folder."""
    path = data_dir / "data_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text("dev1:" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return tuple(parse_keys(path.read_text().strip()).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline", description="Start a Lifeline node.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=("serve", "rotate-keys", "archive", "api-docs"),
        help="serve (default); rotate-keys: re-encrypt personal data with the first data key; "
        "archive --now: move what is past the hot window to the MongoDB archive, then exit; "
        "api-docs: print the API described as docs/API.md (Markdown), or --json DIR: write "
        "openapi.json and asyncapi.json there",
    )
    parser.add_argument("--now", action="store_true", help="with archive: move at once")
    parser.add_argument("--json", metavar="DIR", help="with api-docs: write the two documents")
    args = parser.parse_args(argv)
    if args.command == "api-docs":
        return _api_docs(args.json)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"lifeline: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.node_id)
    if not settings.auth.jwt_secret:
        settings = settings.with_auth(jwt_secret=_dev_jwt_secret(settings.data_dir))
    if not settings.data_keys:
        settings = replace(settings, data_keys=_dev_data_key(settings.data_dir))
    embedded: EmbeddedPostgres | None = None
    if not settings.database_url:
        embedded = EmbeddedPostgres(settings.embedded_pg_dir)
        settings = replace(settings, database_url=embedded.start())
    from server.app import create_app  # after logging is set up

    if args.command == "archive":
        try:
            if not settings.archive.mongodb_url or not args.now:
                print("lifeline: archive --now needs MONGODB_URL", file=sys.stderr)
                return 2
            assert settings.database_url is not None
            total = asyncio.run(_archive(settings))
            print(f"archived {total} rows", flush=True)
            return 0
        finally:
            if embedded is not None:
                embedded.stop()
    if args.command == "rotate-keys":
        try:
            assert settings.database_url is not None
            counts = asyncio.run(_rotate(settings.database_url, settings.data_keys))
            print("re-encrypted: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return 0
        finally:
            if embedded is not None:
                embedded.stop()
    try:
        import uvloop  # a faster event loop where it is installed (not on Windows)

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:

        async def app() -> web.Application:
            return create_app(settings)  # inside the loop that runs it

        url = f"http://{settings.host}:{settings.port}"
        print(f"Lifeline {settings.node_id} listening on {url}", flush=True)
        if settings.api_key == DEV_API_KEY:
            print(f"development API key (X-Api-Key): {DEV_API_KEY}", flush=True)
        run(app(), settings.host, settings.port, shutdown_timeout=settings.shutdown_timeout_s)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def _api_docs(json_dir: str | None) -> int:
    """The documents a node serves, built from its declarations; no database is touched."""
    from server.apidocs import markdown

    documents = asyncio.run(_describe())
    if json_dir:
        folder = Path(json_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "openapi.json").write_bytes(documents.openapi)
        (folder / "asyncapi.json").write_bytes(documents.asyncapi)
        return 0
    sys.stdout.write(markdown(json.loads(documents.openapi), json.loads(documents.asyncapi)))
    return 0


async def _describe() -> ApiDocuments:
    from server.app import API_DOCUMENTS, create_app

    settings = Settings(
        database_url="postgresql://describing-only",
        auth=replace(Settings().auth, jwt_secret=secrets.token_urlsafe(32)),
        data_keys=(("describe", secrets.token_bytes(32)),),
    )
    return create_app(settings)[API_DOCUMENTS]


async def _rotate(dsn: str, keys: tuple[tuple[str, bytes], ...]) -> dict[str, int]:
    from storage.db import apply_migrations, create_pool
    from storage.private_data import reencrypt

    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await apply_migrations(pool)
        return await reencrypt(pool, FieldCipher(dict(keys)))
    finally:
        await pool.close()


async def _archive(settings: Settings) -> int:
    from server.app import archive_mover
    from services.clock import SystemClock
    from services.metrics import Metrics
    from storage.archive import MongoArchive
    from storage.db import Database, apply_migrations, create_pool

    assert settings.database_url is not None and settings.archive.mongodb_url is not None
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    archive = MongoArchive(
        settings.archive.mongodb_url,
        database=settings.archive.database,
        retention_days=settings.archive.retention_days,
    )
    try:
        await apply_migrations(pool)
        await archive.prepare()
        mover = archive_mover(Database(pool), archive, settings, SystemClock(), Metrics())
        total = 0
        while moved := await mover.move_once():
            total += moved
            print(f"moved {moved}", flush=True)
        return total
    finally:
        await archive.close()
        await pool.close()
