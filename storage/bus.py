"""The bus between the nodes of one cluster, routed by interest.

A node is subscribed to the bus channel of a room, a user or a project only
while it holds a socket that needs it: ``want`` and ``unwant`` count the
node's references (realtime/interest.py calls them as sockets enter and leave
rooms), and only the first and the last touch Redis. A message published for a
room reaches the nodes that hold its sockets and no other, so a node's bus work
follows its own sockets' traffic, not the cluster's. A few node-wide topics
(ending revoked sessions) are broadcast channels every node keeps.

``publish`` and ``publish_to`` send bytes to the *other* nodes; the publishing
node acts on its own copy directly, so a single node needs no bus at all
(``NoPeers``). Every message carries its origin, and a node drops its own.

Subscriptions are batched: the wants of one turn of the event loop leave as one
command (up to ``_BATCH`` channels, or one per hash slot on a cluster), so a
reconnect storm is not a command storm. ``settled`` waits for Redis' own
confirmation of a channel's subscription: a join acknowledged after it misses
nothing published after the ack.

On one Redis (or the primary Sentinel names) one pub/sub connection carries
every channel (``SUBSCRIBE``/``PUBLISH``). On a Redis Cluster each primary has
its own connection, a *shard*, carrying the channels whose slot it owns
(``SSUBSCRIBE``/``SPUBLISH``: a message touches that shard alone). A shard that
fails, or that Redis tells a slot moved (an unasked ``sunsubscribe``), makes the
bus re-read the cluster's topology and move channels to their new owners. Each
shard pings its connection; ``healthy`` is false while any shard is down, and a
shard reconnects and re-subscribes everything it carries, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from storage.redis_link import RedisLink

__all__ = ["NoPeers", "PeerBus", "RedisPeerBus"]

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[None]]

_BATCH = 500  # channels per SUBSCRIBE / UNSUBSCRIBE command
_READY = b"lifeline-bus-ready"


class PeerBus(Protocol):
    @property
    def healthy(self) -> bool: ...

    @property
    def has_peers(self) -> bool:
        """False when no other node can exist, so publishing is pointless."""
        ...

    @property
    def channel_count(self) -> int:
        """Interest channels this node is subscribed to (or is subscribing)."""
        ...

    def subscribe(self, topic: str, handler: Handler) -> None:
        """A node-wide topic every node keeps; register before ``start``."""
        ...

    def on_interest(self, handler: Handler) -> None:
        """Where messages of interest channels go (the data, origin removed)."""
        ...

    def want(self, key: str) -> None:
        """One more local reference to the interest channel ``key``."""
        ...

    def unwant(self, key: str) -> bool:
        """One fewer; True when that was the last (the node stops listening)."""
        ...

    async def settled(self, key: str, within_s: float = 2.0) -> None:
        """Return once Redis confirmed the subscription to ``key`` (at most ``within_s``,
        and at once while the bus is down: a join must not wait out an outage)."""
        ...

    async def publish(self, topic: str, data: bytes) -> bool:
        """To every other node (a node-wide topic). True when it left this node."""
        ...

    async def publish_to(self, items: Sequence[tuple[str, bytes]]) -> bool:
        """Each ``(key, data)`` to the nodes that want ``key``, in one round trip."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NoPeers:
    """A single node: nothing to tell anyone."""

    healthy = True
    has_peers = False
    channel_count = 0

    def subscribe(self, topic: str, handler: Handler) -> None:
        return None

    def on_interest(self, handler: Handler) -> None:
        return None

    def want(self, key: str) -> None:
        return None

    def unwant(self, key: str) -> bool:
        return False

    async def settled(self, key: str, within_s: float = 2.0) -> None:
        return None

    async def publish(self, topic: str, data: bytes) -> bool:
        return True

    async def publish_to(self, items: Sequence[tuple[str, bytes]]) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _Channel:
    """One subscribed (or subscribing) channel: its local references, the
    (un)subscribe commands sent and not yet confirmed, in order, and who waits."""

    __slots__ = ("on", "ops", "refs", "shard", "waiters")

    def __init__(self, shard: _Shard) -> None:
        self.refs = 0
        self.on = False  # Redis confirmed the subscription (and nothing is pending)
        # A list: a channel has zero, one or two of these at a time, and a node may
        # have a hundred thousand channels (a deque would cost ten times the bytes).
        self.ops: list[bool] = []
        self.waiters: list[asyncio.Future[None]] | None = None
        self.shard = shard

    def wake(self) -> None:
        if self.waiters:
            for waiter in self.waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self.waiters = None


class RedisPeerBus:
    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        node_id: str,
        health_interval_s: float = 2.0,
        on_error: Callable[[str], None] | None = None,
        on_received: Callable[[str], None] | None = None,
        broadcast: bool = False,
    ) -> None:
        self._link = link
        self._sharded = link.sharded
        self._cluster: RedisCluster = link.client  # type: ignore[assignment]  # if sharded
        self._topic_prefix = prefix + "bus:"
        self._interest_prefix = prefix + "bus:i:"
        self._origin = node_id.encode() + b"|"
        self._topics: dict[bytes, Handler] = {}
        self._interest: Handler | None = None
        self._channels: dict[bytes, _Channel] = {}
        self._shards: dict[str, _Shard] = {}
        self._health_interval = health_interval_s
        self._on_error = on_error or (lambda _kind: None)
        self._on_received = on_received or (lambda _kind: None)
        self._interest_count = 0
        self._started = False
        self._repair: asyncio.Task[None] | None = None
        self._repair_wanted = False
        # A cluster's channels wait here until ``start`` has read its topology.
        self._holding = _Shard(self, "", None, sharded=True)
        self._topology_read = not self._sharded
        self._change = asyncio.Event()  # a shard became healthy
        # Broadcast routing (LIFELINE_BUS_ROUTING=broadcast, to measure the design
        # before): one channel every node hears, whatever rooms its sockets are in.
        self._everything: bytes | None = None
        if broadcast:
            self._everything = (self._topic_prefix + "everything").encode()
            self._acquire(self._everything)

    # -- what the node sees -------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return bool(self._shards) and all(s.healthy for s in self._shards.values())

    @property
    def has_peers(self) -> bool:
        return True

    @property
    def channel_count(self) -> int:
        return self._interest_count

    def subscribe(self, topic: str, handler: Handler) -> None:
        name = (self._topic_prefix + topic).encode()
        self._topics[name] = handler
        self._acquire(name)

    def on_interest(self, handler: Handler) -> None:
        self._interest = handler

    def want(self, key: str) -> None:
        if self._everything is not None:
            return
        if self._acquire((self._interest_prefix + key).encode()):
            self._interest_count += 1

    def unwant(self, key: str) -> bool:
        name = (self._interest_prefix + key).encode()
        channel = self._channels.get(name)
        if channel is None or channel.refs <= 0:
            return False
        channel.refs -= 1
        if channel.refs:
            return False
        self._interest_count -= 1
        channel.shard.request(name, False)
        return True

    async def settled(self, key: str, within_s: float = 2.0) -> None:
        if self._everything is not None:
            return
        channel = self._channels.get((self._interest_prefix + key).encode())
        if channel is None or channel.refs <= 0 or (channel.on and not channel.ops):
            return
        if not channel.shard.healthy:
            return
        waiter = asyncio.get_running_loop().create_future()
        if channel.waiters is None:
            channel.waiters = []
        channel.waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, within_s)

    def _acquire(self, name: bytes) -> bool:
        """True when this is the channel's first reference."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel(self._shard_for(name))
        channel.refs += 1
        if channel.refs > 1:
            return False
        channel.shard.request(name, True)
        return True

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> bool:
        return await self._publish([((self._topic_prefix + topic).encode(), data)], "publish")

    async def publish_to(self, items: Sequence[tuple[str, bytes]]) -> bool:
        if self._everything is not None:
            return await self._publish([(self._everything, d) for _, d in items], "publish")
        prefix = self._interest_prefix
        return await self._publish([((prefix + k).encode(), d) for k, d in items], "publish")

    async def _publish(self, items: list[tuple[bytes, bytes]], kind: str) -> bool:
        client = self._link.client
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        try:
            if len(items) == 1:
                name, data = items[0]
                await client.execute_command(command, name, self._origin + data)
            else:
                async with client.pipeline(transaction=False) as pipe:
                    for name, data in items:
                        pipe.execute_command(command, name, self._origin + data)
                    await pipe.execute()
        except Exception as exc:  # the local delivery already happened; report, go on
            self._on_error(kind)
            log.warning("peer bus publish failed", extra={"error": repr(exc)})
            return False
        return True

    # -- receiving ------------------------------------------------------------------------------

    async def _dispatch(self, name: bytes, data: bytes) -> None:
        if data.startswith(self._origin):
            self._on_received("own")
            return
        handler = self._topics.get(name)
        if handler is not None:
            self._on_received("node-wide")
        else:
            handler = self._interest
            self._on_received("interest")
            if handler is None:
                return
        _, _, body = data.partition(b"|")
        try:
            await handler(body)
        except Exception:
            self._on_error("handler")
            log.exception("peer bus handler failed")

    def _confirmed(self, name: bytes, on: bool, shard: _Shard) -> None:
        channel = self._channels.get(name)
        if channel is None or channel.shard is not shard:
            return
        if channel.ops and channel.ops[0] == on:
            del channel.ops[0]
        elif not on and channel.on and not channel.ops:
            # Unasked: Redis moved the channel's slot to another shard.
            channel.on = False
            self._schedule_repair()
            return
        elif channel.ops:
            return  # a confirmation of a command of an earlier connection
        channel.on = on
        if channel.ops:
            return
        if on and channel.refs > 0:
            channel.wake()
        elif not on and channel.refs <= 0:
            self._forget(name, channel)

    def _forget(self, name: bytes, channel: _Channel) -> None:
        channel.wake()
        del self._channels[name]
        channel.shard.channels.discard(name)

    # -- shards -------------------------------------------------------------------------------

    def _shard_for(self, name: bytes) -> _Shard:
        if not self._sharded:
            shard = self._shards.get("")
            if shard is None:
                assert self._link.subscriber is not None
                client = self._link.subscriber()
                shard = self._shards[""] = _Shard(self, "", client, sharded=False)
                if self._started:
                    shard.start()
            return shard
        if not self._topology_read:
            return self._holding
        node = self._cluster.get_node_from_key(name.decode())
        assert node is not None
        return self._shard_of_node(node.name, node.host, node.port)

    def _shard_of_node(self, key: str, host: str, port: int | str) -> _Shard:
        shard = self._shards.get(key)
        if shard is None:
            shard = _Shard(self, key, self._link.node_client(host, int(port)), sharded=True)
            self._shards[key] = shard
            if self._started:
                shard.start()
        return shard

    async def start(self) -> None:
        if self._sharded:
            await self._cluster.initialize()
            for node in self._cluster.get_primaries():
                self._shard_of_node(node.name, node.host, node.port)
            self._topology_read = True
            for name in list(self._holding.channels):
                channel = self._channels[name]
                channel.shard = self._shard_for(name)
                channel.shard.request(name, True)
            self._holding.channels.clear()
        elif not self._shards:
            self._shard_for(b"")
        self._started = True
        for shard in list(self._shards.values()):
            shard.start()
        # Wait briefly for the first subscriptions so early emits are not missed by peers.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while not self.healthy:
                    self._change.clear()
                    await self._change.wait()

    async def stop(self) -> None:
        self._started = False
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repair
        for shard in list(self._shards.values()):
            await shard.stop()
        for channel in self._channels.values():
            channel.wake()

    def _shard_failed(self) -> None:
        self._on_error("subscription")
        if self._sharded:
            self._schedule_repair()

    def _schedule_repair(self) -> None:
        """Re-read the cluster's topology and move channels whose slot moved."""
        if not self._sharded:
            return
        self._repair_wanted = True
        if self._repair is None or self._repair.done():
            self._repair = asyncio.create_task(self._repair_topology(), name="peer-bus-topology")

    async def _repair_topology(self) -> None:
        client = self._cluster
        while self._repair_wanted and self._started:
            self._repair_wanted = False
            try:
                await client.nodes_manager.initialize()
            except Exception as exc:
                log.warning("reading the cluster's topology failed", extra={"error": repr(exc)})
                self._repair_wanted = True
                await asyncio.sleep(0.5)
                continue
            primaries = {n.name: n for n in client.get_primaries()}
            for node in primaries.values():
                self._shard_of_node(node.name, node.host, node.port)
            moved: dict[_Shard, list[bytes]] = defaultdict(list)
            for name, channel in list(self._channels.items()):
                owner = self._shard_for(name)
                if owner is channel.shard and channel.shard.key in primaries:
                    if channel.refs > 0 and not channel.on and not channel.ops:
                        moved[owner].append(name)  # the slot came back: ask again
                    continue
                channel.shard.channels.discard(name)
                channel.shard = owner
                channel.ops.clear()
                channel.on = False
                if channel.refs > 0:
                    moved[owner].append(name)
                else:
                    self._forget(name, channel)
            for shard, names in moved.items():
                for name in names:
                    shard.request(name, True)
            for key, shard in list(self._shards.items()):
                if key not in primaries and not shard.channels:
                    del self._shards[key]
                    await shard.stop()
            if moved:
                log.info(
                    "peer bus moved channels to their slots' new owners",
                    extra={"channels": sum(len(v) for v in moved.values())},
                )


class _Shard:
    """One pub/sub connection and the channels it carries."""

    def __init__(self, bus: RedisPeerBus, key: str, client: Redis | None, *, sharded: bool) -> None:
        self.bus = bus
        self.key = key
        self.client = client
        self.sharded = sharded
        self.channels: set[bytes] = set()
        self.healthy = False
        self._pending: dict[bytes, bool] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._seen = 0.0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"peer-bus-shard {self.key}")

    async def stop(self) -> None:
        for task in (self._flusher, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._flusher = None
        self.healthy = False
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.aclose()

    def request(self, name: bytes, on: bool) -> None:
        if on:
            self.channels.add(name)
        self._pending[name] = on
        if self._pubsub is not None and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # what this turn of the loop asked for leaves together
        while self._pending and self._pubsub is not None:
            pending, self._pending = self._pending, {}
            channels = self.bus._channels
            wanted: list[bytes] = []
            dropped: list[bytes] = []
            for name, on in pending.items():
                channel = channels.get(name)
                if channel is None or channel.shard is not self:
                    continue
                if on and channel.refs <= 0:
                    continue
                expected = channel.ops[-1] if channel.ops else channel.on
                if expected == on:
                    continue
                channel.ops.append(on)
                (wanted if on else dropped).append(name)
            try:
                await self._send(self._pubsub, wanted, True)
                await self._send(self._pubsub, dropped, False)
            except Exception as exc:  # the reader sees the broken connection and starts over
                log.debug("peer bus subscription command failed", extra={"error": repr(exc)})
                return

    async def _send(self, pubsub: Any, names: Iterable[bytes], on: bool) -> None:
        if self.sharded:
            command = pubsub.ssubscribe if on else pubsub.sunsubscribe
            by_slot: dict[int, list[bytes]] = defaultdict(list)
            for name in names:
                by_slot[key_slot(name)].append(name)
            groups: Iterable[list[bytes]] = by_slot.values()
        else:
            command = pubsub.subscribe if on else pubsub.unsubscribe
            groups = [list(names)]
        for group in groups:
            for start in range(0, len(group), _BATCH):
                await command(*group[start : start + _BATCH])

    async def _run(self) -> None:
        assert self.client is not None
        backoff = 0.1
        while True:
            pubsub = self.client.pubsub()
            try:
                await self._subscribe_all(pubsub)
                backoff = 0.1
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.healthy:
                    log.warning(
                        "peer bus lost its subscription",
                        extra={"shard": self.key, "error": repr(exc)},
                    )
                self.healthy = False
                self._pubsub = None
                self.bus._shard_failed()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _subscribe_all(self, pubsub: Any) -> None:
        """Everything this shard carries, anew on a new connection; then a ping
        whose answer says Redis has processed every subscription before it."""
        channels = self.bus._channels
        names: list[bytes] = []
        for name in list(self.channels):
            channel = channels.get(name)
            if channel is None or channel.shard is not self:
                self.channels.discard(name)
                continue
            if channel.refs <= 0:
                self.bus._forget(name, channel)
                continue
            channel.ops.clear()
            channel.ops.append(True)
            channel.on = False
            names.append(name)
        self._pending.clear()
        await pubsub.ping()  # connects, with or without channels
        self._pubsub = pubsub
        await self._send(pubsub, names, True)
        await pubsub.ping(_READY)

    async def _listen(self, pubsub: Any) -> None:
        interval = self.bus._health_interval
        last_ping = self._seen = time.monotonic()
        bus = self.bus
        while True:
            try:
                message = await pubsub.get_message(timeout=interval)
            except redis.exceptions.ResponseError as exc:
                # A cluster answering MOVED to a subscription: its topology changed.
                log.info("peer bus: %s", exc, extra={"shard": self.key})
                bus._schedule_repair()
                message = None
            now = time.monotonic()
            if message is not None:
                self._seen = now
                kind = message["type"]
                if kind == "message" or kind == "smessage":
                    await bus._dispatch(message["channel"], message["data"])
                elif kind == "subscribe" or kind == "ssubscribe":
                    bus._confirmed(message["channel"], True, self)
                elif kind == "unsubscribe" or kind == "sunsubscribe":
                    bus._confirmed(message["channel"], False, self)
                elif kind == "pong" and message["data"] == _READY and not self.healthy:
                    self.healthy = True
                    bus._change.set()
                    if self._pending and (self._flusher is None or self._flusher.done()):
                        self._flusher = asyncio.create_task(self._flush())
            if now - last_ping >= interval:
                # A subscription can be gone without an error; silence after a ping tells.
                if self._seen < last_ping:
                    raise ConnectionError("peer bus subscription did not answer a ping")
                await pubsub.ping()
                last_ping = now
