"""Holds what the server sends over Socket.IO to its AsyncAPI document.

Every test client (tests/clients.py) passes each event it receives and each ack
it gets here; a payload that does not validate against the document served by
the node, or an event the document does not describe, is recorded as a
violation, and an autouse fixture fails the test that saw it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import jsonschema
import orjson
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["AsyncApiContract", "contract"]

_BASE = "urn:lifeline:asyncapi"


class AsyncApiContract:
    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None
        self._validators: dict[str, jsonschema.protocols.Validator | None] = {}
        self.violations: list[str] = []
        self.published: set[str] = set()
        self.checked = 0

    @property
    def loaded(self) -> bool:
        return self._document is not None

    def load(self, raw: bytes) -> None:
        if self._document is None:
            self._document = orjson.loads(raw)

    def _validator(self, key: str) -> jsonschema.protocols.Validator | None:
        if key not in self._validators:
            assert self._document is not None
            messages = self._document["components"]["messages"]
            if key not in messages:
                self._validators[key] = None
            else:
                registry: Registry[Any] = Registry().with_resource(
                    _BASE, Resource.from_contents(self._document, default_specification=DRAFT202012)
                )
                self._validators[key] = jsonschema.Draft202012Validator(
                    {"$ref": f"{_BASE}#/components/messages/{key}/payload"}, registry=registry
                )
        return self._validators[key]

    async def ensure(self, url: str) -> None:
        """Load the document from a node, once per test run."""
        if self._document is None:
            async with (
                aiohttp.ClientSession() as http,
                http.get(url.rstrip("/") + "/api/v1/asyncapi.json") as answer,
            ):
                self.load(await answer.read())

    def steps(self, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The JavaScript client's own steps; what it saw (``seen`` lines) is checked."""
        return [line for line in lines if not self.seen(line)]

    def seen(self, line: dict[str, Any]) -> bool:
        """Check a ``seen`` line of tests/js/seen.mjs; False for any other line."""
        if "seen" not in line:
            return False
        if line["seen"] == "ack":
            self.ack(str(line["event"]), line["data"])
        else:
            self.event(str(line["event"]), line["data"])
        return True

    async def read_step(self, process: asyncio.subprocess.Process) -> dict[str, Any]:
        """The JavaScript client's next step, checking what it saw on the way."""
        assert process.stdout is not None and process.stderr is not None
        while True:
            raw = await asyncio.wait_for(process.stdout.readline(), 10)
            if not raw:
                raise AssertionError((await process.stderr.read()).decode())
            line = dict(orjson.loads(raw))
            if not self.seen(line):
                return line

    def event(self, name: str, data: Any) -> None:
        """A server event a client received."""
        if self._document is None or name in self.published:
            return
        key = name.replace(":", ".")
        # A name that goes both ways (chat:typing) has its server side under ".emit".
        if key + ".emit" in self._document["components"]["messages"]:
            key += ".emit"
        self._check(key, data, f"event {name!r}")

    def ack(self, name: str, data: Any) -> None:
        """The ack of a client event."""
        if self._document is None:
            return
        self._check(name.replace(":", ".") + ".ack", data, f"ack of {name!r}")

    def _check(self, key: str, data: Any, what: str) -> None:
        validator = self._validator(key)
        self.checked += 1
        if validator is None:
            self.violations.append(f"{what} is not in the AsyncAPI document")
            return
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.absolute_path) or "(root)"
            self.violations.append(f"{what} breaks its schema at {where}: {first.message}")


contract = AsyncApiContract()
