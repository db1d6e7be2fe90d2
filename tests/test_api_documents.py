"""The API described as served: OpenAPI 3.1 and AsyncAPI 3.0 documents that cover every
route and event, checked by the specifications' own validators and a client generator,
and the docs page in Chromium."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate as validate_openapi
from playwright.async_api import Browser, expect

from server.app import SOCKETIO
from tests.conftest import ARTIFACTS, Running
from tests.test_dashboard import _page, browser  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
_DESCRIBED_OUTSIDE_PREFIX = {"/healthz", "/readyz", "/metrics"}
# The fan-out port's methods whose second argument is the event's name.
_EMITTERS = {"to_user", "to_users", "to_room", "to_project", "ask_users", "ask_socket", "to_socket"}


async def _document(server: Running, name: str) -> dict[str, Any]:
    status, document, headers = await server.api.call("GET", f"/api/v1/{name}")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert isinstance(document, dict)
    return document


def _served_routes(server: Running) -> set[tuple[str, str]]:
    served = set()
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "*") or not path:
            continue
        if path.startswith("/api/v1/") or path in _DESCRIBED_OUTSIDE_PREFIX:
            served.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return served


async def test_openapi_document_is_valid_and_describes_every_route(server: Running) -> None:
    document = await _document(server, "openapi.json")
    validate_openapi(document)  # OpenAPI 3.1, its JSON Schemas included
    assert document["openapi"] == "3.1.0"
    described = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = _served_routes(server)
    assert served - described == set(), "served but not described"
    assert described - served == set(), "described but not served"
    # Every route names its errors in the contract's one shape, and its security.
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"], (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == error_ref, (method, path, status)
            if path.startswith("/api/v1/me") or path.startswith("/api/v1/rooms"):
                assert operation["security"] == [{"bearer": []}], (method, path)
    # Only JSON Schema's own keywords: a constraint pydantic could not express
    # (a stray "ge" or "le") would describe nothing.
    assert not _stray_keywords(document), _stray_keywords(document)
    publish = document["paths"]["/api/v1/publish"]["post"]
    assert publish["security"] == [{"apiKey": []}]
    assert "401" in publish["responses"] and "400" in publish["responses"]
    # The node's own settings bound what it takes: its channels, upload types and sizes.
    schemas = document["components"]["schemas"]
    assert schemas["Announce"]["properties"]["size"]["maximum"] > 0
    assert "image/jpeg" in schemas["Announce"]["properties"]["mime"]["enum"]
    envelopes = schemas["Envelope"]["oneOf"]
    assert {e["properties"]["type"]["const"] for e in envelopes} >= {
        "donation.created",
        "notification.requested",
        "project.updated",
        "user.created",
        "user.blocked",
    }


def _stray_keywords(node: Any, where: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("ge", "le", "gt", "lt", "min_length", "max_length") and not isinstance(
                value, dict
            ):
                found.append(f"{where}/{key}")
            found += _stray_keywords(value, f"{where}/{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += _stray_keywords(value, f"{where}/{n}")
    return found


def _emitted_event_names() -> set[str]:
    """Every event name the code hands the fan-out port as a literal."""
    names: set[str] = set()
    for folder in ("services", "realtime"):
        for file in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _EMITTERS
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    names.add(node.args[1].value)
    return names


async def test_asyncapi_document_is_valid_and_describes_every_event(
    server: Running, tmp_path: Path
) -> None:
    document = await _document(server, "asyncapi.json")
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    # The AsyncAPI initiative's own parser: the specification's schema, references and rules.
    checked = subprocess.run(
        ["node", str(JS / "validate-asyncapi.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    messages = {m["name"] for m in document["components"]["messages"].values()}
    # Every event a handler is registered for on either namespace...
    sio = server.app[SOCKETIO]
    for namespace, handlers in sio.handlers.items():
        if namespace == "*":
            continue
        for event in handlers:
            if event not in ("connect", "disconnect", "*"):
                assert event in messages, f"{namespace} {event} is not described"
                assert f"{event} ack" in messages
    # ...and every event the code emits is described.
    emitted = _emitted_event_names()
    assert {"chat:message", "sos:alert", "sos:delivery", "notification"} <= emitted
    assert emitted - messages == set()
    assert not _stray_keywords(document), _stray_keywords(document)
    assert "donation" in messages and "presence" in messages
    # SOS events come with an ack request: the document says what the client answers.
    operations = document["operations"]
    assert "reply" in operations["sos.alert"] and "reply" in operations["sos.escalated"]
    assert operations["chat.send"]["action"] == "receive"
    assert operations["chat.message"]["action"] == "send"


async def test_a_typescript_client_generates_from_the_openapi_document(
    server: Running, tmp_path: Path
) -> None:
    document = await _document(server, "openapi.json")
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(document))
    out = tmp_path / "lifeline.d.ts"
    generated = subprocess.run(
        [str(JS / "node_modules" / ".bin" / "openapi-typescript"), str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    typescript = out.read_text()
    assert '"/api/v1/rooms/{room_id}/messages"' in typescript
    assert "ErrorBody" in typescript and "access_token" in typescript


async def test_api_docs_page_renders_under_the_strict_csp(
    server: Running,
    browser: Browser,  # noqa: F811 (the fixture)
) -> None:
    page, problems = await _page(browser)
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    response = await page.goto(server.url + "/api/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # Swagger UI drew the document: its title, a tag, and an operation of each kind.
    await expect(page.locator(".information-container .title")).to_contain_text("Lifeline")
    await expect(page.locator(".opblock-tag-section").first).to_be_visible()
    await expect(page.locator("[id^='operations-chat-create_room']")).to_be_visible()
    await expect(page.locator("[id^='operations-server_API-publish']")).to_be_visible()
    # No error or warning box of Swagger UI's about the document.
    await expect(page.locator(".errors-wrapper")).to_have_count(0)
    assert "Warning" not in await page.locator("#api-docs").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
    assert problems == [] and violations == [], problems + violations


@pytest.mark.parametrize("name", ["openapi.json", "asyncapi.json"])
async def test_the_documents_are_served_without_credentials(server: Running, name: str) -> None:
    status, document, _ = await server.api.call("GET", f"/api/v1/{name}")
    assert status == 200 and document["info"]["title"].startswith("Lifeline")


async def test_docs_api_md_is_what_the_code_describes(server: Running) -> None:
    """docs/API.md is generated (`lifeline api-docs > docs/API.md`); stale, it fails here."""
    from server.apidocs import markdown

    written = (ROOT / "docs" / "API.md").read_text()
    openapi = await _document(server, "openapi.json")
    asyncapi = await _document(server, "asyncapi.json")
    assert written == markdown(openapi, asyncapi), "run: lifeline api-docs > docs/API.md"
