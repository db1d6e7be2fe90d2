"""The README's start command: no configuration, an embedded PostgreSQL of its own."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import psutil

from tests.clients import Api
from tests.services import free_port, start_node


def _embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LIFELINE_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update({"LIFELINE_DATA_DIR": str(data_dir), "LIFELINE_PORT": str(port)})
    return env


def _postgres_running(data_dir: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(data_dir) in part for part in cmdline):
            return True
    return False


async def test_starts_with_no_configuration_and_reuses_its_data(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data_dir = tmp_path / "var"
    port = free_port()
    node = await start_node(_embedded_env(data_dir, port), tmp_path, timeout=30)
    try:
        assert "listening on http://127.0.0.1:" in node.log()
        api = Api(node.url, http)
        account = await api.register(email="kept@example.org", password="kept password")
        assert (data_dir / "pg" / "PG_VERSION").exists()
        assert (data_dir / "jwt_secret").exists()
    finally:
        assert node.terminate() == 0
    assert not _postgres_running(data_dir), "the embedded PostgreSQL outlived the node"

    again = await start_node(_embedded_env(data_dir, port), tmp_path, timeout=30)
    try:
        api = Api(again.url, http)
        status, body, _ = await api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": "kept@example.org", "password": "kept password"},
        )
        assert status == 200 and body["user"]["id"] == account.id
        # The generated JWT secret was kept too: the old token still works.
        assert (await api.call("GET", "/api/v1/me", token=account.access_token))[0] == 200
    finally:
        assert again.terminate() == 0
