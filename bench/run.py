"""The benchmark suite: Lifeline beside plain python-socketio and Node's socket.io v4.

    .venv/bin/python -m bench.run                 # every scenario, 3 repeats each
    .venv/bin/python -m bench.run --quick         # smaller and shorter, for a first look
    .venv/bin/python -m bench.run --scenarios fanout,capacity --repeat 5

Starts the servers it compares (Node's from bench/peers/node, installed with npm ci),
pins them to core 0 and the load generator (bench/loadgen.py) to core 1 with
taskset, and prints a table; the numbers go to bench/results.json. PostgreSQL:
DATABASE_URL, else an embedded one; Redis: REDIS_URL, else 127.0.0.1:6379, else a
redis-server it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("lifeline", "python-socketio", "node-socket.io")
API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(core: int, cmd: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *cmd]
    return cmd


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


@contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if port_open(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        while not port_open(port):
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()


@contextmanager
def database_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from server.embedded_pg import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="lifeline-bench-pg-"))
    pg = EmbeddedPostgres(folder / "pg")
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


class Server:
    def __init__(self, peer: str, *, port: int, env: dict[str, str], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        if peer == "lifeline":
            cmd = [sys.executable, "-m", "server"]
        elif peer == "python-socketio":
            cmd = [sys.executable, str(ROOT / "bench" / "peers" / "pysio_server.py")]
        else:
            cmd = ["node", str(ROOT / "bench" / "peers" / "node" / "server.js")]
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            pinned(0, cmd), env=env, cwd=str(ROOT), stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{peer} did not start; see {log}")
            time.sleep(0.1)
        self.ps = psutil.Process(self.proc.pid)
        # taskset execs the server: the pid is the server's own.

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def system_cpu(self) -> float:
        """The kernel's share: on loopback a send also runs the receiver's TCP input."""
        return float(self.ps.cpu_times().system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def server_env(peer: str, port: int, *, db: str, redis: str | None, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.pop("REDIS_URL", None)
    env.update({"PORT": str(port), "REDIS_PREFIX": prefix, "PYTHONUNBUFFERED": "1"})
    if redis:
        env["REDIS_URL"] = redis
    if peer == "lifeline":
        env.update(
            {
                "DATABASE_URL": db,
                "LIFELINE_PORT": str(port),
                "LIFELINE_API_KEY": API_KEY,
                "LIFELINE_JWT_SECRET": "bench-secret-" + "x" * 40,
                "LIFELINE_DATA_KEYS": "b1:" + "YmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaGJlbmNoMTI=",
                "LIFELINE_REDIS_PREFIX": prefix + ":",
                "LIFELINE_LOG_LEVEL": "WARNING",
                "LIFELINE_ARGON2_TIME_COST": "1",
                "LIFELINE_ARGON2_MEMORY_KIB": "1024",
                "LIFELINE_CONNECTIONS_PER_ADDRESS": "100000000",
                "LIFELINE_SOCKETS_PER_USER": "100000",
                "LIFELINE_SOCKET_EVENT_BURST": "100000",
                "LIFELINE_SOCKET_EVENTS_PER_S": "100000",
                "LIFELINE_CHAT_SEND_LIMIT": "1000000",
            }
        )
    return env


def loadgen(args: list[str], timeout: float) -> dict[str, Any]:
    cmd = pinned(1, [sys.executable, str(ROOT / "bench" / "loadgen.py"), *args])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bottleneck(server_cpu_s: float, wall_s: float, result: dict[str, Any]) -> str:
    """Which process was the limit: the one that used (nearly) a whole core."""
    window = float(result.get("elapsed_s") or wall_s)
    server = server_cpu_s / wall_s
    gen = float(result["loadgen_cpu_s"]) / window
    result["server_core_share"] = round(server, 2)
    result["loadgen_core_share"] = round(gen, 2)
    if gen > 0.85 and gen >= server:
        return f"load generator ({gen:.0%} of its core)"
    if server > 0.85:
        return f"server ({server:.0%} of its core)"
    return f"neither (server {server:.0%}, generator {gen:.0%}): paced or latency-bound"


def run_fanout(
    peer: str, size: dict[str, Any], db: str, logs: Path, *, packed: bool = False
) -> dict[str, Any]:
    port = free_port()
    server = Server(
        peer,
        port=port,
        env=server_env(peer, port, db=db, redis=None, prefix="b"),
        log=logs / f"{peer}-fanout.log",
    )
    try:
        cpu0, sys0, t0 = server.cpu(), server.system_cpu(), time.perf_counter()
        result = loadgen(
            [
                "fanout",
                "--urls",
                server.url,
                "--publish-url",
                server.url,
                "--api-key",
                API_KEY,
                "--clients",
                str(size["fanout_clients"]),
                "--duration",
                str(size["duration"]),
                *(["--msgpack"] if packed else []),
            ],
            timeout=300,
        )
        cpu, wall = server.cpu() - cpu0, time.perf_counter() - t0
        system = server.system_cpu() - sys0
    finally:
        server.stop()
    # CPU per delivery counts the whole run's server time (connects included) over deliveries.
    deliveries = max(result["deliveries"], 1)
    result["server_cpu_us_per_delivery"] = round(cpu / deliveries * 1e6, 2)
    result["server_system_us_per_delivery"] = round(system / deliveries * 1e6, 2)
    result["bottleneck"] = bottleneck(cpu, wall, result)
    return result


@contextmanager
def two_nodes(peer: str, db: str, redis: str, logs: Path, label: str) -> Iterator[list[Server]]:
    prefix = f"{label}{int(time.time() * 1000) % 10**8}"
    servers: list[Server] = []
    try:
        for n in range(2):
            port = free_port()
            env = server_env(peer, port, db=db, redis=redis, prefix=prefix)
            servers.append(Server(peer, port=port, env=env, log=logs / f"{peer}-{label}-{n}.log"))
        yield servers
    finally:
        for server in servers:
            server.stop()


def run_cluster(peer: str, size: dict[str, Any], db: str, redis: str, logs: Path) -> dict[str, Any]:
    with two_nodes(peer, db, redis, logs, "cluster") as servers:
        cpu0, t0 = sum(s.cpu() for s in servers), time.perf_counter()
        result = loadgen(
            [
                "cluster",
                "--urls",
                ",".join(s.url for s in servers),
                "--publish-url",
                servers[0].url,
                "--api-key",
                API_KEY,
                "--clients",
                str(size["cluster_clients"]),
                "--rate",
                str(size["rate"]),
                "--duration",
                str(size["duration"]),
            ],
            timeout=300,
        )
        cpu, wall = sum(s.cpu() for s in servers) - cpu0, time.perf_counter() - t0
    result["bottleneck"] = bottleneck(cpu / 2, wall, result)
    return result


def run_capacity(peer: str, size: dict[str, Any], db: str, logs: Path) -> dict[str, Any]:
    port = free_port()
    server = Server(
        peer,
        port=port,
        env=server_env(peer, port, db=db, redis=None, prefix="c"),
        log=logs / f"{peer}-capacity.log",
    )
    try:
        time.sleep(1)
        rss0 = server.rss()
        cmd = pinned(
            1,
            [
                sys.executable,
                str(ROOT / "bench" / "loadgen.py"),
                "capacity",
                "--urls",
                server.url,
                "--clients",
                str(size["capacity_clients"]),
                "--duration",
                "3",
            ],
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        time.sleep(1)
        rss1 = server.rss()
        proc.wait(120)
    finally:
        server.stop()
    n = size["capacity_clients"]
    return {
        "clients": n,
        "connections_per_s": ready["connections_per_s"],
        "kb_per_connection": round((rss1 - rss0) / n / 1024, 2),
        "server_rss_mb": round(rss1 / 2**20, 1),
    }


def run_storm(peer: str, size: dict[str, Any], db: str, redis: str, logs: Path) -> dict[str, Any]:
    """A node holding ``capacity_clients`` subscribed sockets is killed (SIGKILL);
    every socket reconnects to the other node and subscribes again: how long until
    all are back (the load generator reconnects at once, 200 handshakes in flight)."""
    with two_nodes(peer, db, redis, logs, "storm") as servers:
        cmd = pinned(
            1,
            [
                sys.executable,
                str(ROOT / "bench" / "loadgen.py"),
                "storm",
                "--urls",
                f"{servers[0].url},{servers[1].url}",
                "--clients",
                str(size["capacity_clients"]),
            ],
        )
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        if not ready.strip():
            raise SystemExit("the storm's load generator did not get ready")
        cpu0 = servers[1].cpu()
        servers[0].proc.kill()
        out, _ = proc.communicate(timeout=300)
        cpu = servers[1].cpu() - cpu0
    result = dict(json.loads(out.strip().splitlines()[-1]))
    result["survivor_cpu_s"] = round(cpu, 3)
    return result


def run_chat(peer: str, size: dict[str, Any], db: str, redis: str, logs: Path) -> dict[str, Any]:
    """Persisted chat exists only in Lifeline; the peers have no equivalent to measure."""
    with two_nodes(peer, db, redis, logs, "chat") as servers:
        cpu0, t0 = sum(s.cpu() for s in servers), time.perf_counter()
        result = loadgen(
            [
                "chat",
                "--urls",
                ",".join(s.url for s in servers),
                "--clients",
                str(size["chat_users"]),
                "--rate",
                str(size["chat_rate"]),
                "--duration",
                str(size["duration"]),
            ],
            timeout=600,
        )
        cpu, wall = sum(s.cpu() for s in servers) - cpu0, time.perf_counter() - t0
    result["bottleneck"] = bottleneck(cpu / 2, wall, result)
    return result


def register(url: str) -> dict[str, Any]:
    """A fresh account on the node: ``{user, access_token, refresh_token}``."""
    email = f"bench-{uuid.uuid4().hex[:8]}@bench.test"
    body = json.dumps({"email": email, "password": "bench password", "display_name": "B"})
    request = urllib.request.Request(
        url + "/api/v1/auth/register",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        account: dict[str, Any] = json.loads(answer.read())
    return account


def run_search(peer: str, size: dict[str, Any], db: str, logs: Path) -> dict[str, Any]:
    """Lifeline only: message search over a large history (bench/search.py)."""
    from bench import search

    port = free_port()
    server = Server(
        peer,
        port=port,
        env=server_env(peer, port, db=db, redis=None, prefix="s"),
        log=logs / "lifeline-search.log",
    )
    try:
        account = register(server.url)
        return search.run(server.url, db, account["access_token"], account["user"]["id"], size)
    finally:
        server.stop()


def run_archive(peer: str, size: dict[str, Any], db: str, logs: Path) -> dict[str, Any]:
    """Lifeline only: history pages from each tier (bench/archive.py)."""
    from bench import archive

    beside = Path(sys.executable).parent / "secantusd-py"
    mongo_port = free_port()
    mongo_log = open(logs / "secantus.log", "ab")  # noqa: SIM115 - closed below
    mongo = subprocess.Popen(
        [
            str(beside),
            "--host",
            "127.0.0.1",
            "--port",
            str(mongo_port),
            "--storage-path",
            str(logs / "secantus-data"),
        ],
        stdout=mongo_log,
        stderr=mongo_log,
    )
    mongo_url = f"mongodb://127.0.0.1:{mongo_port}"
    port = free_port()
    env = server_env(peer, port, db=db, redis=None, prefix="a")
    env.update({"MONGODB_URL": mongo_url, "LIFELINE_ARCHIVE_EVERY_S": "36000"})
    time.sleep(1.0)  # secantusd-py binds its port within a second
    server = Server(peer, port=port, env=env, log=logs / "lifeline-archive.log")
    try:
        account = register(server.url)
        return archive.run(
            server.url, db, mongo_url, account["access_token"], account["user"]["id"], size
        )
    finally:
        server.stop()
        mongo.terminate()
        mongo.wait(10)
        mongo_log.close()


SIZES = {
    "full": {
        "fanout_clients": 1000,
        "cluster_clients": 1000,
        "capacity_clients": 5000,
        "rate": 20,
        "duration": 10,
        "chat_users": 200,
        "chat_rate": 200,
        "search_rooms": 10_000,
        "search_per_room": 100,
        "search_member_rooms": 100,
        "search_queries": 300,
        # The archive runs against secantusdb's server (a Python MongoDB-protocol server
        # for tests), which takes about a thousand upserts a second on this machine.
        "archive_rooms": 500,
        "archive_per_room": 100,
        "archive_pages": 300,
    },
    "quick": {
        "fanout_clients": 500,
        "cluster_clients": 500,
        "capacity_clients": 2000,
        "rate": 20,
        "duration": 5,
        "chat_users": 100,
        "chat_rate": 100,
        "search_rooms": 1_000,
        "search_per_room": 100,
        "search_member_rooms": 100,
        "search_queries": 100,
        "archive_rooms": 100,
        "archive_per_room": 100,
        "archive_pages": 100,
    },
}


def median_spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default="fanout,cluster,capacity,chat")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--table", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(Path(args.out).read_text())
        print_table(summarize(saved["runs"]))
        return
    size = SIZES["quick" if args.quick else "full"]
    peers = args.peers.split(",")
    if "node-socket.io" in peers and not (ROOT / "bench/peers/node/node_modules").exists():
        subprocess.run(
            [
                "npm",
                "ci",
                "--prefix",
                str(ROOT / "bench/peers/node"),
                "--silent",
                "--no-audit",
                "--no-fund",
            ],
            check=True,
        )
    logs = Path(tempfile.mkdtemp(prefix="lifeline-bench-logs-"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with database_url() as db, redis_url() as redis:
        for scenario in args.scenarios.split(","):
            for peer in peers:
                runs = results.setdefault(scenario, {}).setdefault(peer, [])
                for _ in range(args.repeat):
                    if scenario == "fanout":
                        runs.append(run_fanout(peer, size, db, logs))
                    elif scenario == "cluster":
                        runs.append(run_cluster(peer, size, db, redis, logs))
                    elif scenario == "capacity":
                        runs.append(run_capacity(peer, size, db, logs))
                    elif scenario == "fanout-msgpack":
                        if peer == "python-socketio":
                            break
                        runs.append(run_fanout(peer, size, db, logs, packed=True))
                    elif scenario == "storm":
                        runs.append(run_storm(peer, size, db, redis, logs))
                    elif scenario == "chat":
                        if peer != "lifeline":
                            break
                        runs.append(run_chat(peer, size, db, redis, logs))
                    elif scenario == "archive":
                        if peer != "lifeline":
                            break
                        runs.append(run_archive(peer, size, db, logs))
                    elif scenario == "search":
                        if peer != "lifeline":
                            break
                        runs.append(run_search(peer, size, db, logs))
                    print(scenario, peer, json.dumps(runs[-1]), flush=True)
    summary = summarize(results)
    Path(args.out).write_text(
        json.dumps({"size": size, "runs": results, "summary": summary}, indent=1)
    )
    print_table(summary)


KEYS = {
    "fanout": [
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "server_system_us_per_delivery",
        "lost",
    ],
    "fanout-msgpack": [
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "server_system_us_per_delivery",
        "lost",
    ],
    "cluster": ["p50_ms", "p99_ms", "max_ms", "lost"],
    "capacity": ["kb_per_connection", "connections_per_s"],
    "chat": ["acks_per_s", "p50_ms", "p99_ms", "failed"],
    "storm": ["storm_s", "resubscribed_per_s", "reconnected", "failed_attempts", "survivor_cpu_s"],
    "archive": [
        "messages",
        "hot p50_ms",
        "hot p99_ms",
        "archive p50_ms",
        "archive p99_ms",
        "move_rows_per_s",
        "pg_messages_mb_before",
        "pg_messages_mb_after",
    ],
    "search": ["messages", "p50_ms", "p99_ms", "rare p50_ms", "typo p50_ms", "one room p50_ms"],
}


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for scenario, by_peer in results.items():
        for peer, runs in by_peer.items():
            entry = {
                k: median_spread([float(r[k]) for r in runs if r.get(k) is not None])
                for k in KEYS[scenario]
                if any(r.get(k) is not None for r in runs)
            }
            entry["bottleneck"] = [r.get("bottleneck") for r in runs]
            summary.setdefault(scenario, {})[peer] = entry
    return summary


def print_table(summary: dict[str, Any]) -> None:
    for scenario, by_peer in summary.items():
        print(f"\n## {scenario}")
        keys = KEYS[scenario]
        print("| peer | " + " | ".join(keys) + " | bottleneck |")
        print("|" + " --- |" * (len(keys) + 2))
        for peer, entry in by_peer.items():
            cells = [
                f"{entry[k]['median']} ({entry[k]['min']}-{entry[k]['max']})" if k in entry else "-"
                for k in keys
            ]
            shares = entry["bottleneck"] or ["-"]
            print(f"| {peer} | " + " | ".join(cells) + f" | {shares[0]} |")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
