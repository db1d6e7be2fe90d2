"""The load generator: one asyncio process holding many raw Engine.IO v4 / Socket.IO v5
WebSocket clients (they answer pings), a publisher, and the measurements.

Run by bench/run.py in its own process, pinned to its own core; it prints one JSON
object. Its own CPU use is reported, so a run can tell when the generator, not the
server, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import aiohttp
import msgpack

NS = "/live"


class Subscriber:
    """One /live client subscribed to a project, counting what it receives; with
    ``packed``, a socket.io-msgpack-parser client (binary frames, its own path)."""

    def __init__(self, stats: Stats, *, packed: bool = False) -> None:
        self.stats = stats
        self.packed = packed
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, http: aiohttp.ClientSession, url: str, project: str) -> None:
        path = "/socket.io-msgpack/" if self.packed else "/socket.io/"
        ws = await http.ws_connect(
            url + path + "?EIO=4&transport=websocket",
            compress=0,
            autoping=False,
            max_msg_size=0,
        )
        self.ws = ws
        opened = await ws.receive_str()
        assert opened.startswith("0"), opened
        await self._send(0)  # CONNECT /live
        await self._until(0)
        await self._send(2, ["live:subscribe", {"project_id": project}], ack_id=1)
        await self._until(3)  # its ack

    async def _send(self, kind: int, data: Any = None, ack_id: int | None = None) -> None:
        """One Socket.IO packet to /live, in this client's parser."""
        assert self.ws is not None
        if self.packed:
            packet: dict[str, Any] = {"type": kind, "nsp": NS}
            if data is not None:
                packet["data"] = data
            if ack_id is not None:
                packet["id"] = ack_id
            await self.ws.send_bytes(msgpack.packb(packet))
        else:
            body = "" if data is None else json.dumps(data)
            await self.ws.send_str(f"4{kind}{NS},{'' if ack_id is None else ack_id}{body}")

    async def _until(self, kind: int) -> None:
        """Read until a packet of ``kind`` arrives, answering pings meanwhile."""
        assert self.ws is not None
        ws = self.ws
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                if msgpack.unpackb(message.data)["type"] == kind:
                    return
            elif message.type == aiohttp.WSMsgType.TEXT:
                if message.data == "2":
                    await ws.send_str("3")
                elif message.data.startswith(f"4{kind}{NS},"):
                    return
            else:
                raise ConnectionError(f"the connection ended: {message.type}")

    async def read(self) -> None:
        assert self.ws is not None
        if self.packed:
            await self._read_packed()
            return
        ws = self.ws
        stats = self.stats
        prefix = f'42{NS},["'
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            text = message.data
            if text == "2":
                await ws.send_str("3")
            elif text.startswith(prefix):
                now = time.time()
                data = json.loads(text[len(NS) + 3 :])[1]
                stats.got(data["seq"], now - data["t"])

    async def _read_packed(self) -> None:
        assert self.ws is not None
        ws = self.ws
        stats = self.stats
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                packet = msgpack.unpackb(message.data)
                if packet.get("type") == 2:
                    data = packet["data"][1]
                    stats.got(data["seq"], time.time() - data["t"])
            elif message.type == aiohttp.WSMsgType.TEXT:
                if message.data == "2":
                    await ws.send_str("3")
            else:
                break


class Stats:
    def __init__(self) -> None:
        self.per_seq: defaultdict[int, int] = defaultdict(int)
        self.latencies: list[float] = []
        self.total = 0
        self.waiters: dict[int, tuple[int, asyncio.Future[None]]] = {}

    def got(self, seq: int, latency: float) -> None:
        self.total += 1
        self.per_seq[seq] += 1
        self.latencies.append(latency)
        waiter = self.waiters.get(seq)
        if waiter is not None and self.per_seq[seq] >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def wait_all(self, seq: int, count: int, within_s: float) -> bool:
        if self.per_seq[seq] >= count:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[seq] = (count, future)
        try:
            await asyncio.wait_for(future, within_s)
            return True
        except TimeoutError:
            return False
        finally:
            self.waiters.pop(seq, None)


async def connect_all(
    http: aiohttp.ClientSession,
    urls: list[str],
    n: int,
    project: str,
    concurrency: int,
    *,
    packed: bool = False,
) -> tuple[list[Subscriber], Stats, float]:
    stats = Stats()
    subs = [Subscriber(stats, packed=packed) for _ in range(n)]
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, sub: Subscriber) -> None:
        async with gate:
            await sub.connect(http, urls[i % len(urls)], project)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, s) for i, s in enumerate(subs)))
    elapsed = time.perf_counter() - started
    for sub in subs:
        asyncio.get_running_loop().create_task(sub.read())
    return subs, stats, elapsed


async def publish(http: aiohttp.ClientSession, url: str, key: str, project: str, seq: int) -> None:
    body = {
        "channel": f"project:{project}",
        "event": "donation",
        "data": {
            "seq": seq,
            "t": time.time(),
            "project_id": project,
            "total_minor": seq * 100,
            "currency": "EUR",
            "donors_count": seq,
            "donation": {"amount_minor": 100, "donor_display": "Bench", "message": None},
        },
    }
    async with http.post(url + "/api/v1/publish", json=body, headers={"X-Api-Key": key}) as r:
        if r.status != 202:
            raise SystemExit(f"publish answered {r.status}: {await r.text()}")


class ChatUser:
    """A Socket.IO client on ``/`` that sends ``chat:send`` and times each ack."""

    def __init__(self, latencies: list[float], failures: list[str]) -> None:
        self.latencies = latencies
        self.failures = failures
        self.pending: dict[int, float] = {}
        self.next_id = 1
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.joined = asyncio.Event()

    async def connect(self, http: aiohttp.ClientSession, url: str, token: str, room: str) -> None:
        ws = await http.ws_connect(
            url + "/socket.io/?EIO=4&transport=websocket", compress=0, autoping=False
        )
        self.ws = ws
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40" + json.dumps({"token": token}))
        while not (await ws.receive_str()).startswith("40"):
            pass
        asyncio.get_running_loop().create_task(self.read())
        await self.call("chat:join", {"room_id": room})

    async def call(self, event: str, data: dict[str, Any]) -> None:
        assert self.ws is not None
        ack_id = self.next_id
        self.next_id += 1
        self.pending[ack_id] = time.perf_counter()
        await self.ws.send_str(f"42{ack_id}" + json.dumps([event, data]))

    async def read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            text = message.data
            if text == "2":
                await self.ws.send_str("3")
            elif text.startswith("43"):
                bracket = text.index("[")
                ack_id = int(text[2:bracket])
                started = self.pending.pop(ack_id, None)
                if started is None:
                    continue
                if ack_id == 1:
                    self.joined.set()
                    continue
                ack = json.loads(text[bracket:])[0]
                if ack.get("ok"):
                    self.latencies.append(time.perf_counter() - started)
                else:
                    self.failures.append(ack["error"]["code"])


async def chat(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    urls = args.urls.split(",")
    run = uuid.uuid4().hex[:6]
    accounts = []
    for n in range(args.clients):
        body = {
            "email": f"bench-{run}-{n}@example.org",
            "password": "bench-password",
            "display_name": f"B{n}",
        }
        async with http.post(urls[n % len(urls)] + "/api/v1/auth/register", json=body) as r:
            accounts.append(await r.json())
    rooms = []
    for n in range(0, args.clients - 1, 2):
        async with http.post(
            urls[0] + "/api/v1/rooms",
            json={"kind": "direct", "member_ids": [accounts[n + 1]["user"]["id"]]},
            headers={"Authorization": "Bearer " + accounts[n]["access_token"]},
        ) as r:
            rooms.append((await r.json())["room"]["id"])
    latencies: list[float] = []
    failures: list[str] = []
    users = [ChatUser(latencies, failures) for _ in accounts]
    for n, (user, account) in enumerate(zip(users, accounts, strict=True)):
        await user.connect(http, urls[n % len(urls)], account["access_token"], rooms[n // 2])
    await asyncio.gather(*(u.joined.wait() for u in users))
    interval = 1.0 / args.rate
    sent = 0
    started = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - started < args.duration:
        user = users[sent % len(users)]
        await user.call(
            "chat:send",
            {
                "room_id": rooms[(sent % len(users)) // 2],
                "client_msg_id": f"{run}-{sent}",
                "text": "hello",
            },
        )
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * interval - time.perf_counter()))
    elapsed = time.perf_counter() - started
    async with asyncio.timeout(10):  # the last acks
        while len(latencies) + len(failures) < sent:  # noqa: ASYNC110 - a bench, polled
            await asyncio.sleep(0.05)
    lat = [x * 1000 for x in latencies]
    for user in users:
        if user.ws is not None:
            await user.ws.close()
    return {
        "clients": args.clients,
        "rooms": len(rooms),
        "sent": sent,
        "acked": len(lat),
        "failed": len(failures),
        "acks_per_s": round(len(lat) / elapsed, 1),
        "p50_ms": round(pct(lat, 0.5), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "loadgen_cpu_s": round(time.process_time() - cpu0, 3),
    }


async def storm(http: aiohttp.ClientSession, args: argparse.Namespace) -> dict[str, Any]:
    """Subscribers on the first node; once it dies (the bench kills it after our
    "ready" line), each reconnects to the second node and subscribes again at once,
    ``--concurrency`` handshakes in flight: the time until all are back."""
    first, second = args.urls.split(",")[:2]
    project = "storm-" + uuid.uuid4().hex[:6]
    stats = Stats()
    subs = [Subscriber(stats) for _ in range(args.clients)]
    gate = asyncio.Semaphore(args.concurrency)

    async def connect(sub: Subscriber, url: str) -> None:
        async with gate:
            await sub.connect(http, url, project)

    await asyncio.gather(*(connect(s, first) for s in subs))
    print(json.dumps({"ready": True}), flush=True)
    lost_at: list[float] = []
    back_at: list[float] = []
    failures = 0
    cpu0 = time.process_time()

    async def life(sub: Subscriber) -> None:
        nonlocal failures
        await sub.read()  # ends when the first node dies
        lost_at.append(time.perf_counter())
        for _ in range(100):
            try:
                await connect(sub, second)
                break
            except Exception:
                failures += 1
                await asyncio.sleep(0.05)
        else:
            return
        back_at.append(time.perf_counter())

    await asyncio.gather(*(life(s) for s in subs))
    elapsed = max(back_at) - min(lost_at) if back_at else float("nan")
    for sub in subs:
        if sub.ws is not None:
            await sub.ws.close()
    return {
        "clients": args.clients,
        "reconnected": len(back_at),
        "failed_attempts": failures,
        "storm_s": round(elapsed, 3),
        "resubscribed_per_s": round(len(back_at) / elapsed, 1) if back_at else 0.0,
        "loadgen_cpu_s": round(time.process_time() - cpu0, 3),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> dict[str, Any]:
    urls = args.urls.split(",")
    project = "bench-" + uuid.uuid4().hex[:6]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        if args.scenario == "chat":
            return await chat(http, args)
        if args.scenario == "storm":
            return await storm(http, args)
        subs, stats, connect_s = await connect_all(
            http, urls, args.clients, project, args.concurrency, packed=args.msgpack
        )
        result: dict[str, Any] = {
            "clients": args.clients,
            "connect_s": round(connect_s, 3),
            "connections_per_s": round(args.clients / connect_s, 1),
        }
        cpu0 = time.process_time()
        if args.scenario == "capacity":
            print(json.dumps({"ready": True, **result}), flush=True)
            await asyncio.sleep(args.duration)
        elif args.scenario == "fanout":
            # Closed loop: the next event goes out once every subscriber has the last one.
            seq, lost = 0, 0
            started = time.perf_counter()
            while time.perf_counter() - started < args.duration:
                seq += 1
                await publish(http, args.publish_url, args.api_key, project, seq)
                if not await stats.wait_all(seq, args.clients, 10):
                    lost += args.clients - stats.per_seq[seq]
            elapsed = time.perf_counter() - started
            result.update(
                events=seq,
                deliveries=stats.total,
                elapsed_s=round(elapsed, 3),
                deliveries_per_s=round(stats.total / elapsed, 1),
                lost=lost,
            )
        elif args.scenario == "cluster":
            interval = 1.0 / args.rate
            seq = 0
            started = time.perf_counter()
            while time.perf_counter() - started < args.duration:
                seq += 1
                await publish(http, args.publish_url, args.api_key, project, seq)
                next_at = started + seq * interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            # Let the last events arrive (what has not after 5 s is counted lost).
            await stats.wait_all(seq, args.clients, 5)
            lat = [x * 1000 for x in stats.latencies]
            result.update(
                events=seq,
                deliveries=stats.total,
                lost=seq * args.clients - stats.total,
                p50_ms=round(pct(lat, 0.5), 2),
                p99_ms=round(pct(lat, 0.99), 2),
                max_ms=round(max(lat), 2) if lat else None,
                mean_ms=round(statistics.fmean(lat), 2) if lat else None,
            )
        result["loadgen_cpu_s"] = round(time.process_time() - cpu0, 3)
        for sub in subs:
            if sub.ws is not None:
                await sub.ws.close()
    return result


def cli() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("fanout", "cluster", "capacity", "chat", "storm"))
    parser.add_argument("--urls", required=True, help="server URLs, comma-separated")
    parser.add_argument("--publish-url", default="")
    parser.add_argument("--api-key", default=os.environ.get("LIFELINE_API_KEY", "bench-key"))
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second (cluster)")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--msgpack", action="store_true", help="subscribers speak socket.io-msgpack-parser"
    )
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    print(json.dumps(asyncio.run(main(args))), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    cli()
