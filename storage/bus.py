"""The bus between the nodes of one cluster.

``publish`` sends bytes to the *other* nodes subscribed to a topic; the
publishing node acts on its own copy directly, so a single node needs no bus
at all (``NoPeers``). ``RedisPeerBus`` uses Redis pub/sub: one PUBLISH per
message, whatever the number of sockets it is for. Its listener never dies
silently: it pings its subscription, and on any failure it reconnects and
re-subscribes with backoff while ``healthy`` reports the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

__all__ = ["NoPeers", "PeerBus", "RedisPeerBus"]

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[None]]


class PeerBus(Protocol):
    @property
    def healthy(self) -> bool: ...

    @property
    def has_peers(self) -> bool:
        """False when no other node can exist, so publishing is pointless."""
        ...

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Register before ``start``."""
        ...

    async def publish(self, topic: str, data: bytes) -> bool:
        """True when the message left this node (or no peer can exist)."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoPeers:
    """A single node: nothing to tell anyone."""

    healthy = True
    has_peers = False

    def subscribe(self, topic: str, handler: Handler) -> None:
        return None

    async def publish(self, topic: str, data: bytes) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisPeerBus:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        node_id: str,
        health_interval_s: float = 2.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix + "bus:"
        self._origin = node_id.encode() + b"|"
        self._handlers: dict[bytes, Handler] = {}
        self._health_interval = health_interval_s
        self._task: asyncio.Task[None] | None = None
        self._healthy = False
        self._on_error = on_error or (lambda _kind: None)
        self._last_pong = 0.0
        self._subscribed = asyncio.Event()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def has_peers(self) -> bool:
        return True

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers[(self._prefix + topic).encode()] = handler

    async def publish(self, topic: str, data: bytes) -> bool:
        try:
            await self._redis.publish(self._prefix + topic, self._origin + data)
        except Exception as exc:  # the local delivery already happened; report, go on
            self._on_error("publish")
            log.warning("peer bus publish failed", extra={"error": repr(exc)})
            return False
        return True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="peer-bus")
        # Wait briefly for the first subscription so early emits are not missed by peers.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._healthy = False

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub: PubSub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*self._handlers.keys())
                # The confirmations arrive as messages; drain them before reporting healthy.
                for _ in self._handlers:
                    await pubsub.get_message(timeout=2.0)
                self._healthy = True
                self._subscribed.set()
                backoff = 0.1
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._healthy:
                    log.warning("peer bus lost its subscription", extra={"error": repr(exc)})
                self._healthy = False
                self._on_error("subscription")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _listen(self, pubsub: PubSub) -> None:
        last_ping = time.monotonic()
        self._last_pong = last_ping
        while True:
            message = await pubsub.get_message(timeout=self._health_interval)
            now = time.monotonic()
            if message is not None:
                kind = message.get("type")
                if kind == "message":
                    await self._dispatch(message["channel"], message["data"])
                elif kind == "pong":
                    self._last_pong = now
            if now - last_ping >= self._health_interval:
                # A subscription can be gone without an error; an unanswered ping tells.
                if self._last_pong < last_ping:
                    raise ConnectionError("peer bus subscription did not answer a ping")
                await pubsub.ping()
                last_ping = now

    async def _dispatch(self, channel: bytes, data: bytes) -> None:
        if data.startswith(self._origin):
            return
        handler = self._handlers.get(channel)
        if handler is None:
            return
        _, _, body = data.partition(b"|")
        try:
            await handler(body)
        except Exception:
            self._on_error("handler")
            log.exception("peer bus handler failed")
