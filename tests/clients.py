"""Real clients for the tests: REST over aiohttp, Socket.IO over python-socketio."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import aiohttp
import socketio

from tests.contract import contract


@dataclass
class Account:
    user: dict[str, Any]
    access_token: str
    refresh_token: str
    password: str

    @property
    def id(self) -> str:
        return str(self.user["id"])


class Api:
    """A REST client for one server URL."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base = base_url.rstrip("/")
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        merged = dict(headers or {})
        published = json.get("event") if isinstance(json, dict) else None
        if path == "/api/v1/publish" and isinstance(published, str):
            contract.published.add(published)  # its data is the publisher's, not ours
        if token:
            merged["Authorization"] = f"Bearer {token}"
        async with self.http.request(
            method, self.base + path, json=json, data=data, headers=merged
        ) as response:
            body: Any = None
            if response.status != 204:
                text = await response.text()
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = text
            return response.status, body, response.headers

    async def register(
        self,
        *,
        email: str | None = None,
        password: str = "correct horse battery",
        display_name: str = "Tester",
        role: str | None = None,
        phone: str | None = None,
    ) -> Account:
        body: dict[str, Any] = {
            "email": email or f"u{uuid.uuid4().hex[:12]}@example.org",
            "password": password,
            "display_name": display_name,
        }
        if role:
            body["role"] = role
        if phone:
            body["phone"] = phone
        status, answer, _ = await self.call("POST", "/api/v1/auth/register", json=body)
        assert status == 201, answer
        return Account(answer["user"], answer["access_token"], answer["refresh_token"], password)


class Inbox:
    """Collects the events a socket receives; tests await them with a timeout."""

    def __init__(self) -> None:
        self.events: defaultdict[str, list[Any]] = defaultdict(list)
        self._waiters: list[tuple[str, asyncio.Future[Any], int]] = []
        self._consumed: defaultdict[str, int] = defaultdict(int)

    def record(self, event: str, data: Any) -> None:
        self.events[event].append(data)
        count = len(self.events[event])
        for waiter in list(self._waiters):
            name, future, want = waiter
            if name == event and count >= want and not future.done():
                future.set_result(self.events[event][want - 1])
                self._waiters.remove(waiter)

    async def nth(self, event: str, n: int, timeout: float = 5.0) -> Any:
        """The n-th (1-based) event of that name, waiting for it to arrive."""
        if len(self.events[event]) >= n:
            return self.events[event][n - 1]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, future, n))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(
                f"no {event!r} #{n} within {timeout}s; got {dict(self.events)}"
            ) from None

    async def next(self, event: str, timeout: float = 5.0) -> Any:
        """The first event of that name that no earlier ``next`` returned."""
        value = await self.nth(event, self._consumed[event] + 1, timeout)
        self._consumed[event] += 1
        return value

    def count(self, event: str) -> int:
        return len(self.events[event])


class Socket:
    """A python-socketio client with an inbox and a disconnect signal."""

    def __init__(self, *, reconnection: bool = False, msgpack: bool = False) -> None:
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            request_timeout=5,
            **({"serializer": "msgpack"} if msgpack else {}),
        )
        # socket.io-msgpack-parser clients have their own path (LIFELINE_MSGPACK_PATH).
        self.path = "socket.io-msgpack" if msgpack else "socket.io"
        self.inbox = Inbox()
        self.disconnected = asyncio.Event()
        self.disconnect_reasons: list[Any] = []
        self.connect_errors: list[Any] = []

        @self.sio.on("connect_error", namespace="*")
        async def on_connect_error(namespace: str, data: Any = None) -> None:
            self.connect_errors.append(data)

        @self.sio.on("*", namespace="*")
        async def any_event(event: str, namespace: str, data: Any = None) -> None:
            contract.event(event, data)
            self.inbox.record(event, data)

        @self.sio.on("disconnect", namespace="*")
        async def on_disconnect(namespace: str, reason: Any = None) -> None:
            self.disconnect_reasons.append(reason)
            self.disconnected.set()

    async def connect(
        self,
        url: str,
        *,
        token: str | None = None,
        namespace: str = "/",
        transports: list[str] | None = None,
    ) -> None:
        auth = {"token": token} if token is not None else None
        if not contract.loaded:
            async with (
                aiohttp.ClientSession() as http,
                http.get(url.rstrip("/") + "/api/v1/asyncapi.json") as answer,
            ):
                contract.load(await answer.read())
        await self.sio.connect(
            url,
            auth=auth,
            namespaces=[namespace],
            transports=transports or ["websocket"],
            socketio_path=self.path,
            wait_timeout=5,
        )

    async def call(self, event: str, data: Any = None, *, namespace: str = "/") -> Any:
        ack = await self.sio.call(event, data, namespace=namespace, timeout=10)
        contract.ack(event, ack)
        return ack

    async def emit(self, event: str, data: Any = None, *, namespace: str = "/") -> None:
        await self.sio.emit(event, data, namespace=namespace)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


async def make_room(
    api: Api, owner: Account, others: list[Account], *, kind: str = "group", title: str = "Room"
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "member_ids": [a.id for a in others]}
    if kind == "group":
        body["title"] = title
    status, answer, _ = await api.call("POST", "/api/v1/rooms", json=body, token=owner.access_token)
    assert status in (200, 201), answer
    return dict(answer["room"])


async def send(socket: Socket, room_id: str, text: str, client_msg_id: str | None = None) -> Any:
    """``chat:send``; returns the stored message, failing the test on an error ack."""
    ack = await socket.call(
        "chat:send",
        {"room_id": room_id, "client_msg_id": client_msg_id or uuid.uuid4().hex, "text": text},
    )
    assert ack["ok"], ack
    return ack["message"]


class ChatFollower:
    """The README's reconnect recipe, as a client: every acked message once, in order.

    Keep the last seq of each room; after every (re)connect, join the rooms and
    call ``chat:sync`` with those seqs; apply a message only if it is the next
    seq of its room, and sync again when one arrives after a gap.
    """

    def __init__(self, token: str, room_ids: list[str]) -> None:
        self.token = token
        self.last_seq = dict.fromkeys(room_ids, 0)
        self.received: dict[str, list[dict[str, Any]]] = {r: [] for r in room_ids}
        self.socket: Socket | None = None
        self._lock = asyncio.Lock()
        self._progress = asyncio.Event()

    async def connect(self, url: str) -> None:
        socket = Socket()
        self.socket = socket

        @socket.sio.on("chat:message")
        async def on_message(data: dict[str, Any]) -> None:
            contract.event("chat:message", data)
            message = data["message"]
            room = message["room_id"]
            if message["seq"] == self.last_seq.get(room, -1) + 1:
                self._apply(message)
            elif message["seq"] > self.last_seq.get(room, 0):
                asyncio.get_running_loop().create_task(self.sync())  # a gap: fetch it

        await socket.connect(url, token=self.token)
        for room in self.last_seq:
            ack = await socket.call("chat:join", {"room_id": room})
            assert ack["ok"], ack
        await self.sync()

    def _apply(self, message: dict[str, Any]) -> None:
        self.received[message["room_id"]].append(message)
        self.last_seq[message["room_id"]] = message["seq"]
        self._progress.set()

    async def sync(self) -> None:
        async with self._lock:
            socket = self.socket
            while socket is not None and socket.sio.connected:
                ack = await socket.call("chat:sync", {"rooms": dict(self.last_seq)})
                assert ack["ok"], ack
                for room, messages in ack["messages"].items():
                    for message in messages:
                        if message["seq"] == self.last_seq[room] + 1:
                            self._apply(message)
                if not ack["more"]:
                    return

    async def until(self, room_id: str, seq: int, timeout: float = 20.0) -> None:
        async def wait() -> None:
            while self.last_seq[room_id] < seq:
                self._progress.clear()
                await self._progress.wait()

        await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
