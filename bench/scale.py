"""What a node pays for the cluster's work: interest routing beside broadcast.

    .venv/bin/python -m bench.scale                       # 2, 4, 8 nodes; both designs
    .venv/bin/python -m bench.scale --nodes 4 --rate-per-node 100 --duration 10
    .venv/bin/python -m bench.scale --subscriptions       # 100,000 sockets in 50,000 rooms
    .venv/bin/python -m bench.scale --postgres            # the chat write path's ceiling

Nodes: N Lifeline processes on one Redis (REDIS_URL, else 127.0.0.1:6379, else a
redis-server it starts; a ``redis+cluster://`` URL works too), all pinned to
core 0; this process (subscribers and publisher) pinned to core 1. Each node
holds the sockets of its own rooms (``--rooms`` /live project rooms per node,
``--subscribers`` sockets each); one more node holds no socket and takes the
publishes (``POST /api/v1/publish``, as the server API or a Kafka consumer
would): ``--rate-per-node`` events a second for each node's rooms, so the
cluster's traffic grows with its nodes while each node's own stays the same.
Per subscriber node it reads the CPU time the process used in the publishing
window and the bus messages it received (``lifeline_bus_messages_total``). The designs
alternate per node count: ``LIFELINE_BUS_ROUTING=broadcast`` (every node
hears every event) and ``interest`` (the default).

Results: printed, and written to bench/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import Stats, Subscriber, pct, publish
from bench.run import API_KEY, ROOT, Server, database_url, free_port, redis_url, server_env

_BUS = re.compile(r'^lifeline_bus_messages_total\{kind="([^"]+)"\} (\S+)$', re.M)


async def bus_messages(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url + "/metrics") as answer:
        text = await answer.text()
    return {kind: float(value) for kind, value in _BUS.findall(text)}


async def drive(
    servers: list[Server],
    publisher: Server,
    *,
    rooms: int,
    subscribers: int,
    rate: float,
    duration: float,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        stats = Stats()
        subs: list[Subscriber] = []
        targets: list[str] = []
        for n, server in enumerate(servers):
            for r in range(rooms):
                project = f"scale-{run}-{n}-{r}"
                targets.append(project)
                for _ in range(subscribers):
                    sub = Subscriber(stats)
                    await sub.connect(server.url, project)
                    subs.append(sub)
        before = [await bus_messages(http, s.url) for s in servers]
        cpu0 = [s.cpu() for s in servers]
        publisher_cpu0 = publisher.cpu()
        interval = 1.0 / rate
        seq = 0
        started = time.perf_counter()
        while time.perf_counter() - started < duration:
            target = targets[seq % len(targets)]
            seq += 1
            await publish(http, publisher.url, API_KEY, target, seq)
            await asyncio.sleep(max(0.0, started + seq * interval - time.perf_counter()))
        elapsed = time.perf_counter() - started
        await stats.wait_all(seq, subscribers, 5)
        cpu = [s.cpu() - c for s, c in zip(servers, cpu0, strict=True)]
        publisher_cpu = publisher.cpu() - publisher_cpu0
        after = [await bus_messages(http, s.url) for s in servers]
        for sub in subs:
            sub.close()
    received = [
        {k: a.get(k, 0.0) - b.get(k, 0.0) for k in ("interest", "node-wide", "own")}
        for a, b in zip(after, before, strict=True)
    ]
    per_node_bus = [sum(r.values()) for r in received]
    lat = [x * 1000 for x in stats.latencies]
    return {
        "nodes": len(servers),
        "events": seq,
        "events_per_s": round(seq / elapsed, 1),
        "deliveries": stats.total,
        "lost": seq * subscribers - stats.total,
        "p50_ms": round(pct(lat, 0.5), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "bus_messages_per_node": round(statistics.fmean(per_node_bus), 1),
        "bus_messages_per_node_per_s": round(statistics.fmean(per_node_bus) / elapsed, 1),
        "cpu_ms_per_node_per_s": round(statistics.fmean(cpu) / elapsed * 1000, 1),
        "cpu_ms_per_node_per_s_max": round(max(cpu) / elapsed * 1000, 1),
        "cpu_us_per_event_per_node": round(statistics.fmean(cpu) / seq * 1e6, 1),
        "publisher_cpu_ms_per_s": round(publisher_cpu / elapsed * 1000, 1),
        "received_by_kind": {
            k: round(sum(r[k] for r in received) / len(received), 1) for k in received[0]
        },
    }


def run_nodes(
    n: int, routing: str, args: argparse.Namespace, db: str, redis: str, logs: Path
) -> dict[str, Any]:
    prefix = f"scale{uuid.uuid4().hex[:6]}"
    servers: list[Server] = []
    try:
        for i in range(n + 1):  # the last one takes the publishes and holds no socket
            port = free_port()
            env = server_env("lifeline", port, db=db, redis=redis, prefix=prefix)
            env["LIFELINE_BUS_ROUTING"] = routing
            servers.append(
                Server("lifeline", port=port, env=env, log=logs / f"scale-{routing}-{n}-{i}.log")
            )
        result = asyncio.run(
            drive(
                servers[:n],
                servers[n],
                rooms=args.rooms,
                subscribers=args.subscribers,
                rate=args.rate_per_node * n,
                duration=args.duration,
            )
        )
    finally:
        for server in servers:
            server.stop()
    result["routing"] = routing
    return result


async def subscription_cost(url: str, sockets: int, rooms: int) -> dict[str, Any]:
    """The bus alone, as a node with ``sockets`` sockets in ``rooms`` rooms uses it:
    one channel per user and one per room. Memory, commands, time to subscribe,
    and time to subscribe everything again after Redis drops the connection."""
    import gc
    import tracemalloc

    import psutil
    from redis.asyncio import Redis

    from storage.bus import RedisPeerBus
    from storage.redis_link import connect_redis

    link = connect_redis(url)
    admin = connect_redis(url).client
    bus = RedisPeerBus(link, prefix=f"subs{uuid.uuid4().hex[:6]}:", node_id="bench")
    await bus.start()

    # Plain clients of every server (every primary of a cluster), for INFO and CLIENT.
    if link.sharded:
        await admin.initialize()  # type: ignore[union-attr]
        servers = [Redis(host=n.host, port=n.port) for n in admin.get_primaries()]  # type: ignore[union-attr]
    else:
        servers = [admin]

    async def each_node(*command: str) -> list[Any]:
        return [await server.execute_command(*command) for server in servers]

    async def commands() -> int:
        total = 0
        for stats in await each_node("INFO", "commandstats"):
            for name in ("cmdstat_subscribe", "cmdstat_ssubscribe"):
                total += int(stats.get(name, {}).get("calls", 0))
        return total

    keys = [f"/#user:{uuid.uuid4()}" for _ in range(sockets)]
    room_keys = [f"/#room:{uuid.uuid4()}" for _ in range(rooms)]

    async def redis_memory() -> int:
        return sum(int(info["used_memory"]) for info in await each_node("INFO", "memory"))

    commands0 = await commands()
    gc.collect()
    process = psutil.Process()
    rss0, redis0 = process.memory_info().rss, await redis_memory()
    started = time.perf_counter()
    for n, key in enumerate(keys):
        bus.want(key)
        bus.want(room_keys[n % rooms])
    if link.sharded:
        await asyncio.gather(*(bus.settled(k, within_s=120) for k in keys + room_keys))
    else:
        # One connection: Redis confirms in order, so the last confirmed means all are.
        await bus.settled(keys[-1], within_s=120)
    subscribe_s = time.perf_counter() - started
    gc.collect()
    node_bytes = process.memory_info().rss - rss0
    redis_bytes = await redis_memory() - redis0
    commands1 = await commands()
    channels = bus.channel_count

    # Redis drops every pub/sub connection: time until all is subscribed again.
    started = time.perf_counter()
    # By id: CLIENT KILL TYPE pubsub misses connections that only SSUBSCRIBE.
    for server in servers:
        for client in await server.client_list():
            if int(client.get("sub", 0)) + int(client.get("ssub", 0)) > 0:
                await server.execute_command("CLIENT", "KILL", "ID", client["id"])
    while bus.healthy:  # noqa: ASYNC110 - a bench, polled
        await asyncio.sleep(0.001)
    while not bus.healthy:  # noqa: ASYNC110 - a bench, polled
        await asyncio.sleep(0.005)
    resubscribe_s = time.perf_counter() - started
    commands2 = await commands()
    await bus.stop()
    await link.aclose()

    # What the node keeps per channel: Python objects still alive once all is subscribed.
    link = connect_redis(url)
    bus = RedisPeerBus(link, prefix=f"subs{uuid.uuid4().hex[:6]}:", node_id="bench")
    await bus.start()
    more = [f"/#user:{uuid.uuid4()}" for _ in range(sockets)]
    gc.collect()
    tracemalloc.start()
    for n, key in enumerate(more):
        bus.want(key)
        bus.want(room_keys[n % rooms])
    await bus.settled(more[-1], within_s=120)
    await asyncio.sleep(0.5)
    gc.collect()
    retained, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await bus.stop()
    await link.aclose()
    for server in servers:
        await server.aclose()
    if link.sharded:
        await admin.aclose()
    return {
        "sockets": sockets,
        "rooms": rooms,
        "channels": channels,
        "subscribe_s": round(subscribe_s, 2),
        "subscribe_commands": commands1 - commands0,
        "node_rss_bytes_per_channel": round(node_bytes / channels),
        "node_python_bytes_per_channel": round(retained / channels),
        "redis_bytes_per_channel": round(redis_bytes / channels),
        "resubscribe_after_drop_s": round(resubscribe_s, 2),
        "resubscribe_commands": commands2 - commands1,
    }


def _pin_self() -> None:
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="2,4,8")
    parser.add_argument("--rooms", type=int, default=20, help="rooms per node")
    parser.add_argument("--subscribers", type=int, default=5, help="sockets per room")
    parser.add_argument(
        "--rate-per-node",
        type=float,
        default=100,
        help="events per second for each node's rooms (the total grows with the nodes)",
    )
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--subscriptions", action="store_true")
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    _pin_self()
    logs = Path(os.environ.get("BENCH_LOGS", "/tmp/lifeline-bench-logs"))
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with redis_url() as redis:
        if args.subscriptions:
            results["subscriptions"] = asyncio.run(
                subscription_cost(redis, args.sockets, args.sockets // 2)
            )
            print(json.dumps(results["subscriptions"]), flush=True)
        if args.postgres:
            from bench.chat_ceiling import measure

            with database_url() as db:
                results["postgres"] = measure(db)
            print(json.dumps(results["postgres"]), flush=True)
        if not (args.subscriptions or args.postgres):
            with database_url() as db:
                runs: list[dict[str, Any]] = []
                for n in (int(x) for x in args.nodes.split(",")):
                    for routing in ("broadcast", "interest"):
                        runs.append(run_nodes(n, routing, args, db, redis, logs))
                        print(json.dumps(runs[-1]), flush=True)
                results["scale"] = runs
    out = ROOT / "bench" / "scale.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous.update(results)
    out.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()
