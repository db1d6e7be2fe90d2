"""Fixtures: real PostgreSQL and Redis, the real app on loopback, real clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from server.app import create_app
from server.serving import Listener
from server.settings import AuthSettings, LimitSettings, ProviderSettings, Settings
from storage.crypto import parse_keys
from storage.db import apply_migrations, create_pool
from tests.clients import Api, Socket
from tests.contract import contract
from tests.providers import ProviderRecorder, SmtpRecorder
from tests.services import (
    API_KEY,
    DATA_KEYS,
    JWT_SECRET,
    KAFKA_TOPICS,
    KafkaBroker,
    NodeProcess,
    Postgres,
    RedisClusterServers,
    RedisServer,
    clear_redis_prefix,
    free_port,
    node_env,
    spawn_redis_cluster,
    start_node,
    start_postgres,
    start_redis,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


class FakeClock:
    """Real time plus an offset that tests move forward; wall time can also be frozen."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen: float | None = None

    def now(self) -> float:
        return (time.time() if self.frozen is None else self.frozen) + self.offset

    def freeze(self, at: float) -> None:
        self.frozen = at - self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture(autouse=True)
def socket_contract() -> Iterator[None]:
    """Every event and ack the test clients saw matches the AsyncAPI document."""
    contract.violations.clear()
    contract.published.clear()
    yield
    violations = list(contract.violations)
    contract.violations.clear()
    assert not violations, "\n".join(violations)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = start_postgres()

    async def migrate() -> None:
        pool = await create_pool(server.dsn, min_size=1, max_size=2)
        try:
            await apply_migrations(pool)
        finally:
            await pool.close()

    asyncio.run(migrate())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisClusterServers]:
    """Three primaries and three replicas, from redis-server --cluster-enabled yes."""
    servers = spawn_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield servers
    servers.stop()


@pytest.fixture(params=["one-redis", "redis-cluster"])
def shared_redis_url(request: pytest.FixtureRequest, redis_server: RedisServer) -> str:
    """What the nodes of a multi-node test share: every such test runs on one Redis
    and on a Redis Cluster (sharded pub/sub)."""
    if request.param == "one-redis":
        return redis_server.url
    servers: RedisClusterServers = request.getfixturevalue("redis_cluster_servers")
    return servers.url


async def _truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            """SELECT tablename FROM pg_tables
                WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"""
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def db(postgres: Postgres) -> str:
    """The test database, emptied for this test."""
    await _truncate(postgres.dsn)
    return postgres.dsn


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def base_settings(dsn: str, **changes: Any) -> Settings:
    settings = Settings(
        database_url=dsn,
        api_key=API_KEY,
        node_id="test-" + uuid.uuid4().hex[:6],
        shutdown_timeout_s=2.0,
        db_pool_min=1,
        db_pool_max=10,
        auth=AuthSettings(jwt_secret=JWT_SECRET, argon2_time_cost=1, argon2_memory_kib=1024),
        data_keys=tuple(parse_keys(DATA_KEYS).items()),
        limits=LimitSettings(),
    )
    return replace(settings, **changes)


@dataclass
class Running:
    url: str
    app: web.Application
    api: Api
    server: Listener


ServerFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_server(
    db: str, http: aiohttp.ClientSession, clock: FakeClock
) -> AsyncIterator[ServerFactory]:
    started: list[Listener] = []

    async def factory(
        settings: Settings | None = None, *, extra_channels: tuple[Any, ...] = (), **changes: Any
    ) -> Running:
        settings = settings or base_settings(db, **changes)
        app = create_app(settings, clock=clock, extra_channels=extra_channels)
        server = Listener(app, "127.0.0.1", free_port())
        await server.start()
        started.append(server)
        url = f"http://127.0.0.1:{server.port}"
        return Running(url, app, Api(url, http), server)

    yield factory
    for server in reversed(started):
        await server.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> Running:
    """One node, single-node mode (in-process state)."""
    return await make_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Socket]]:
    made: list[Socket] = []

    def factory(**kwargs: Any) -> Socket:
        socket = Socket(**kwargs)
        made.append(socket)
        return socket

    yield factory
    for socket in made:
        await socket.close()


@pytest.fixture
async def cluster(
    db: str,
    shared_redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[NodeProcess]]]:
    """Start Lifeline nodes as real processes sharing PostgreSQL and Redis."""
    nodes: list[NodeProcess] = []

    async def factory(redis: bool = True, **extra: str) -> NodeProcess:
        env = node_env(
            database_url=db,
            redis_url=shared_redis_url if redis else None,
            prefix=redis_prefix,
            port=free_port(),
            extra=extra,
        )
        node = await start_node(env, tmp_path)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.kill()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / node.log_path.name).write_text(node.log())
    await clear_redis_prefix(shared_redis_url, redis_prefix)


@pytest.fixture
async def redis_settings(
    db: str, shared_redis_url: str, redis_prefix: str
) -> AsyncIterator[Settings]:
    """Settings of an in-process node in cluster mode."""
    yield base_settings(db, redis_url=shared_redis_url, redis_prefix=redis_prefix)
    await clear_redis_prefix(shared_redis_url, redis_prefix)


@pytest.fixture
async def providers() -> AsyncIterator[ProviderRecorder]:
    """Local Twilio and FCM endpoints that record what the real SDKs send them."""
    recorder = ProviderRecorder()
    await recorder.start()
    yield recorder
    await recorder.close()


def provider_settings(
    settings: Settings, providers: ProviderRecorder, *, fcm_file: Path | None = None
) -> Settings:
    """Twilio pointed at the recorder; FCM too when given a service-account file path."""
    env = providers.env()
    return replace(
        settings,
        providers=ProviderSettings(
            twilio_account_sid=env["TWILIO_ACCOUNT_SID"],
            twilio_auth_token=env["TWILIO_AUTH_TOKEN"],
            twilio_from=env["TWILIO_FROM_NUMBER"],
            twilio_base_url=env["LIFELINE_TWILIO_BASE_URL"],
            fcm_credentials_file=str(providers.service_account(fcm_file)) if fcm_file else None,
            fcm_base_url=providers.url if fcm_file else None,
        ),
    )


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpRecorder]:
    recorder = SmtpRecorder()
    recorder.controller.start()
    yield recorder
    recorder.controller.stop()


@pytest.fixture
async def kafka(tmp_path: Path) -> AsyncIterator[KafkaBroker]:
    """A fresh Kafka-protocol broker with Lifeline's topics (and their dead-letter topics)."""
    broker = KafkaBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    await broker.create_topics(KAFKA_TOPICS + [t + ".dlq" for t in KAFKA_TOPICS[:4]])
    yield broker
    broker.stop()
