"""Where the bytes of an idle subscribed connection go, on a Lifeline node.

Runs a node in this process with tracemalloc on (and uvloop, as a node runs),
connects ``--clients`` sockets with the capacity scenario's load generator
(WebSocket, ``/live``, one ``live:subscribe`` each), and prints the growth of the Python heap per
connection grouped by source file, beside the growth of the process's RSS (the
difference is memory Python does not trace: uvloop's transports, the allocator's
slack). PostgreSQL: DATABASE_URL, else an embedded one.

    .venv/bin/python -m bench.conn_memory --clients 2000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tracemalloc

import psutil

from bench.run import ROOT, database_url, free_port, server_env


async def measure(db: str, clients: int, top: int) -> None:
    from server.app import create_app
    from server.serving import Listener
    from server.settings import Settings

    port = free_port()
    env = server_env("lifeline", port, db=db, redis=None, prefix="m")
    settings = Settings.from_env(env)
    listener = Listener(create_app(settings), "127.0.0.1", port)
    await listener.start()
    process = psutil.Process()
    try:
        gc.collect()
        tracemalloc.start(1)
        before, rss0 = tracemalloc.take_snapshot(), process.memory_info().rss
        gen = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "bench" / "loadgen.py"),
            "capacity",
            "--urls",
            f"http://127.0.0.1:{port}",
            "--clients",
            str(clients),
            "--duration",
            "5",
            stdout=asyncio.subprocess.PIPE,
        )
        assert gen.stdout is not None
        ready = json.loads(await gen.stdout.readline())
        await asyncio.sleep(1)  # let the last acks go out
        gc.collect()
        after, rss1 = tracemalloc.take_snapshot(), process.memory_info().rss
        tracemalloc.stop()
        stats = after.compare_to(before, "filename")
        traced = sum(s.size_diff for s in stats)
        print(f"{clients} connections, {ready['connections_per_s']} connections/s")
        # tracemalloc's own bookkeeping grows the RSS too: bench.run's capacity
        # scenario is the figure for memory; this says where the traced part goes.
        rss = (rss1 - rss0) / clients / 1024
        print(f"RSS growth per connection (with tracemalloc's own): {rss:.2f} KB")
        print(f"traced Python heap per conn.: {traced / clients / 1024:7.2f} KB")
        print()
        for stat in stats[:top]:
            name = stat.traceback[0].filename
            for prefix in (str(ROOT) + os.sep, sys.prefix + os.sep, sys.base_prefix + os.sep):
                name = name.removeprefix(prefix)
            size, count = stat.size_diff / clients, stat.count_diff / clients
            print(f"{size:8.0f} B  {count:5.1f} blocks  {name}")
        await gen.wait()
    finally:
        await listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    with database_url() as db:
        import uvloop  # as the node runs (server/cli.py)

        uvloop.run(measure(db, args.clients, args.top))


if __name__ == "__main__":
    main()
