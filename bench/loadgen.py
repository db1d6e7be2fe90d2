"""The load generator: one asyncio process holding many raw Engine.IO v4 / Socket.IO v5
WebSocket clients (they answer pings), a publisher, and the measurements.

Run by bench/run.py in its own process, pinned to its own core; it prints one JSON
object. Its own CPU use is reported, so a run can tell when the generator, not the
server, was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import msgpack

NS = "/live"


class Subscriber(asyncio.Protocol):
    """One /live client subscribed to a project, counting what it receives; with
    ``packed``, a socket.io-msgpack-parser client (binary frames, its own path).

    It speaks WebSocket itself on an ``asyncio.Protocol`` (frames parsed from the
    bytes as they arrive, every client frame masked with a zero key) rather than
    through aiohttp's client: aiohttp cost the generator about 17 µs per delivery,
    so a server faster than that could not be told apart from one that is not.
    """

    def __init__(self, stats: Stats, *, packed: bool = False) -> None:
        self.stats = stats
        self.packed = packed
        self.prefix = f'42{NS},["'.encode()
        self._reset()

    def _reset(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.rest = b""
        self.upgraded = False
        self.waiting: tuple[int, asyncio.Future[None]] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def connect(self, url: str, project: str) -> None:
        loop = asyncio.get_running_loop()
        self._reset()  # a reconnect starts clean
        parts = urlsplit(url)
        path = "/socket.io-msgpack/" if self.packed else "/socket.io/"
        transport, _ = await loop.create_connection(
            lambda: self, parts.hostname or "127.0.0.1", parts.port or 80
        )
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await self._until(-1)  # the 101 and Engine.IO's open packet
        self._send(0)  # CONNECT /live
        await self._until(0)
        self._send(2, ["live:subscribe", {"project_id": project}], ack_id=1)
        await self._until(3)  # its ack

    def _send(self, kind: int, data: Any = None, ack_id: int | None = None) -> None:
        """One Socket.IO packet to /live, in this client's parser."""
        if self.packed:
            packet: dict[str, Any] = {"type": kind, "nsp": NS}
            if data is not None:
                packet["data"] = data
            if ack_id is not None:
                packet["id"] = ack_id
            self._frame(2, msgpack.packb(packet))
        else:
            body = "" if data is None else json.dumps(data)
            ack = "" if ack_id is None else str(ack_id)
            self._frame(1, f"4{kind}{NS},{ack}{body}".encode())

    def _frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        if size < 126:
            head = bytes((0x80 | opcode, 0x80 | size))
        elif size < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
        if self.transport is not None:
            self.transport.write(head + b"\0\0\0\0" + payload)

    async def _until(self, kind: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting = (kind, future)
        await asyncio.wait_for(future, 30)

    def _woke(self, kind: int) -> None:
        if self.waiting is not None and self.waiting[0] == kind:
            future = self.waiting[1]
            self.waiting = None
            if not future.done():
                future.set_result(None)

    async def read(self) -> None:
        """Until the connection ends."""
        await self.closed

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiting is not None and not self.waiting[1].done():
            self.waiting[1].set_exception(ConnectionError("the connection ended"))

    def data_received(self, data: bytes) -> None:
        if self.rest:
            data = self.rest + data
            self.rest = b""
        offset = 0
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.rest = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(data[:200].decode(errors="replace"))
            offset = end + 4
            self.upgraded = True
        size = len(data)
        while size - offset >= 2:
            opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
            start = offset + 2
            if length == 126:
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            self._packet(opcode, data[start:end])
            offset = end
        if offset < size:
            self.rest = data[offset:]

    def _packet(self, opcode: int, payload: bytes) -> None:
        if opcode == 1:
            if payload.startswith(self.prefix):
                # Only two numbers are wanted: read them where they are rather than
                # decoding the whole event (json.loads was a fifth of the generator).
                self.stats.got(*_seq_and_latency(payload, time.time()))
            elif payload == b"2":
                self._frame(1, b"3")
            elif payload[:1] == b"0":
                self._woke(-1)
            elif payload[:1] == b"4":
                self._woke(payload[1] - 0x30)
        elif opcode == 2:
            packet = msgpack.unpackb(payload)
            kind = packet.get("type")
            if kind == 2:
                data = packet["data"][1]
                self.stats.got(data["seq"], time.time() - data["t"])
            else:
                self._woke(kind)
        elif opcode == 8:
            self.close()


# The publisher's event starts {"seq": n, "t": time, ...}, kept in that order by
# both servers' JSON encoders; anything else is decoded whole.
_SEQ_T = re.compile(rb'"seq":\s*(\d+),\s*"t":\s*([-+0-9.eE]+)')


def _seq_and_latency(payload: bytes, now: float) -> tuple[int, float]:
    found = _SEQ_T.search(payload)
    if found is not None:
        return int(found[1]), now - float(found[2])
    data = json.loads(payload[payload.index(b"[") :])[1]
    return int(data["seq"]), now - float(data["t"])


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
            await sub.connect(urls[i % len(urls)], project)

    started = time.perf_counter()
    await asyncio.gather(*(one(i, s) for i, s in enumerate(subs)))
    return subs, stats, time.perf_counter() - started


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


async def storm(args: argparse.Namespace) -> dict[str, Any]:
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
            await sub.connect(url, project)

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
        sub.close()
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
            return await storm(args)
        subs, stats, connect_s = await connect_all(
            urls, args.clients, project, args.concurrency, packed=args.msgpack
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
            # Closed loop with a window: event n goes out once every subscriber has
            # event n - window, so the server never idles while the last deliveries
            # of one event and the publish request of the next are in flight.
            seq, lost = 0, 0
            started = time.perf_counter()
            while time.perf_counter() - started < args.duration:
                seq += 1
                await publish(http, args.publish_url, args.api_key, project, seq)
                due = seq - args.window + 1
                if due > 0 and not await stats.wait_all(due, args.clients, 10):
                    lost += args.clients - stats.per_seq[due]
            for due in range(max(1, seq - args.window + 2), seq + 1):
                if not await stats.wait_all(due, args.clients, 10):
                    lost += args.clients - stats.per_seq[due]
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
            sub.close()
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
        "--window", type=int, default=4, help="fan-out events in flight (closed loop)"
    )
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
