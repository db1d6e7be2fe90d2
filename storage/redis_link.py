"""One Redis for the whole node, whichever shape it has: one server, a Redis
Cluster, or a primary watched by Sentinel. ``REDIS_URL`` says which:

- ``redis://host:port/db`` (or ``rediss://``, ``unix://``): one server.
- ``redis+cluster://host:port,host:port`` (or ``rediss+cluster://``): a Redis
  Cluster, found from any of the listed nodes. The bus runs on sharded pub/sub
  (``SPUBLISH``/``SSUBSCRIBE``, Redis 7+): a message touches only the shard that
  owns its channel. Keys that a script or a pipeline uses together share a hash
  tag, so each multi-key operation stays on one slot.
- ``redis+sentinel://host:port,host:port/service/db``: the primary Sentinel
  names for ``service``; a failover moves every connection to the new primary.

A password goes where a URL puts it (``redis+cluster://:secret@host:port``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

__all__ = [
    "REDIS_UNREACHABLE",
    "Commands",
    "RedisLink",
    "RedisShape",
    "connect_redis",
    "describe_redis_url",
]

# What the stores take: either client has the commands they use. On a cluster, keys
# a script or a pipeline touches together carry one hash tag (``{presence}``).
Commands = Redis | RedisCluster

# What Redis raises while it cannot serve: down, unreachable, or (a cluster) failing
# over, a slot without a primary for the moment. Callers treat these as an outage.
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,
    redis.exceptions.RedisClusterException,
    OSError,
)

RedisShape = Literal["single", "cluster", "sentinel"]

# Socket options every client of a node shares: fail fast, notice dead peers.
_OPTIONS: dict[str, Any] = dict(socket_connect_timeout=2, socket_timeout=5)


# Pub/sub connections do not retry inside redis-py: the bus notices a lost connection
# at once (so /readyz tells), and reconnects and re-subscribes on its own terms.
_NO_RETRY = Retry(NoBackoff(), retries=0)


@dataclass(frozen=True)
class RedisLink:
    """The commands client (``Redis`` or ``RedisCluster``) and what shape it has;
    ``subscriber`` makes the client of the bus's pub/sub connection (one Redis, or
    Sentinel's primary; a cluster's shards use ``node_client``)."""

    client: Commands
    shape: RedisShape
    subscriber: Callable[[], Redis] | None = None

    @property
    def sharded(self) -> bool:
        return self.shape == "cluster"

    def node_client(self, host: str, port: int) -> Redis:
        """A plain client of one cluster node, for the pub/sub of its shard."""
        assert isinstance(self.client, RedisCluster)
        kwargs = self.client.get_connection_kwargs()
        options: dict[str, Any] = {
            k: kwargs[k]
            for k in ("password", "username", "socket_connect_timeout", "socket_timeout")
            if k in kwargs
        }
        return Redis(host=host, port=port, retry=_NO_RETRY, **options)

    async def aclose(self) -> None:
        await self.client.aclose()


def _hosts(netloc: str, default_port: int) -> tuple[str | None, list[tuple[str, int]]]:
    password: str | None = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        password = unquote(credentials.partition(":")[2]) or None
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: cannot read the address {part!r}")
        hosts.append((host.strip("[]"), int(port)))
    return password, hosts


def describe_redis_url(url: str) -> RedisShape:
    """The shape a ``REDIS_URL`` names; ValueError for one Lifeline cannot use."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis+cluster", "rediss+cluster"):
        return "cluster"
    if scheme == "redis+sentinel":
        return "sentinel"
    if scheme in ("redis", "rediss", "unix"):
        return "single"
    raise ValueError(
        "REDIS_URL must start with redis://, rediss://, unix://, "
        f"redis+cluster:// or redis+sentinel:// (got {scheme or url!r})"
    )


def connect_redis(url: str, **options: Any) -> RedisLink:
    """A client for ``url``; nothing connects until the first command."""
    shape = describe_redis_url(url)
    merged = {**_OPTIONS, **options}
    if shape == "single":
        return RedisLink(
            Redis.from_url(url, health_check_interval=10, **merged),
            shape,
            subscriber=lambda: Redis.from_url(url, retry=_NO_RETRY, **merged),
        )
    parts = urlsplit(url)
    password, hosts = _hosts(parts.netloc, 6379 if shape == "cluster" else 26379)
    if shape == "cluster":
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            # A few quick retries (redis-py's default is ten, up to a second apart):
            # a command that cannot be served while a primary fails over should
            # fail within a second, so the caller's fallback (in-process rate
            # limits, a resync for chat) takes over rather than a client's ack waiting.
            retry=Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.25), retries=3),
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            **merged,
        )
        return RedisLink(client, shape)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("REDIS_URL: redis+sentinel:// needs the service name: .../<service>[/db]")
    service = path[0]
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    query = parse_qs(parts.query)
    sentinel_password = query.get("sentinel_password", [None])[0]
    sentinel = Sentinel(
        hosts,
        sentinel_kwargs={**_OPTIONS, "password": sentinel_password},
        password=password,
        db=db,
        **merged,
    )
    return RedisLink(
        sentinel.master_for(service, health_check_interval=10),
        shape,
        subscriber=lambda: sentinel.master_for(service, retry=_NO_RETRY),
    )
