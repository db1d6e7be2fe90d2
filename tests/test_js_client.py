"""The official JavaScript socket.io-client v4 works unchanged (WebSocket and polling)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Running
from tests.contract import contract

JS = Path(__file__).resolve().parent / "js"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (JS / "node_modules" / "socket.io-client").exists():
        raise RuntimeError(
            "the JS client tests need node and `npm ci --prefix tests/js` (scripts/test does both)"
        )
    return node


async def _run_client(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        _node(),
        str(JS / "client.mjs"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _lines(process: asyncio.subprocess.Process) -> list[dict[str, object]]:
    """The client's steps; every event and ack it saw is held to the AsyncAPI document."""
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, stderr.decode()
    return contract.steps([json.loads(line) for line in stdout.decode().splitlines()])


@pytest.mark.parametrize("parser", ["json", "msgpack"])
@pytest.mark.parametrize("transport", ["websocket", "polling", "upgrade"])
async def test_js_client_connects_calls_and_receives(
    server: Running, transport: str, parser: str
) -> None:
    """The official client on every transport it uses (WebSocket, long-polling, and
    the upgrade from one to the other that browsers make), with either parser."""
    await contract.ensure(server.url)
    account = await server.api.register()
    extra = ("msgpack",) if parser == "msgpack" else ()
    process = await _run_client(server.url, account.access_token, transport, "greeting", *extra)
    assert process.stdout is not None
    first = await contract.read_step(process)
    if transport == "upgrade":
        # It opens on long-polling; the upgrade may be done before the namespace is.
        assert first["step"] == "connected" and first["transport"] in ("polling", "websocket")
        assert await contract.read_step(process) == {"step": "upgraded", "transport": "websocket"}
    else:
        assert first == {"step": "connected", "transport": transport}
    assert await contract.read_step(process) == {"step": "ack", "ok": True}
    status, _, _ = await server.api.call(
        "POST",
        "/api/v1/publish",
        json={"channel": f"user:{account.id}", "event": "greeting", "data": {"n": [1, 2.5, "x"]}},
        headers={"X-Api-Key": "test-api-key"},
    )
    assert status == 202
    rest = await _lines(process)
    assert rest == [{"step": "event", "data": {"n": [1, 2.5, "x"]}}]


async def test_js_client_sees_unauthorized(server: Running) -> None:
    process = await _run_client(server.url, "not-a-token", "websocket", "never")
    assert await _lines(process) == [{"step": "connect_error", "message": "unauthorized"}]
