"""Fan-out: events/s from publish to N WebSocket subscribers, beside raw ``websockets``.

Both servers run in this process, each on its own event-loop thread; the N
subscribers run in a separate process (one asyncio loop, plain ``websockets``
clients), so client work does not share the servers' GIL. For each N in
(1, 10, 100) and each server:

* **rtnb** — the reference server (``rtnb.server.serve``): every event is
  published with ``publish_many`` in chunks of :data:`CHUNK` (which appends it
  to the log, mints its replay token, encodes it once and queues the same text
  for every subscriber); each subscriber has authenticated and subscribed.
* **rtnb, no batching** — the same with ``batch_max_messages=1``: one WebSocket
  message per event, to show what batching of backlogs contributes.
* **raw websockets** — a bare ``websockets`` server that broadcasts the *same*
  encoded event frames with ``websockets.broadcast`` (no log, no tokens, no
  queues, no backpressure): the ceiling.

Throughput is ``N × M`` deliveries over the time from the first publish to the
moment the last subscriber has decoded its M-th event (subscribers decode every
message with msgspec and count events, inside batches too). Each configuration
runs :data:`REPEATS` times; the best run counts. Targets (issue 3): rtnb ≥ 50%
of raw at N = 1 and ≥ 30% at N = 100.

**Per server core.** The servers and the publisher are this process; the
subscribers are another. So this process's CPU time over a run (user + system,
``time.process_time``) is what the server side spent, and deliveries per
CPU-second is the figure to set beside one published by others per core:
Centrifugo's "million connections" test stand (centrifugal.dev blog,
2020-02-10) delivered ~500,000 messages/s of ~100 bytes on 40 CPUs of server
nodes, i.e. :data:`CENTRIFUGO_PER_CORE` ≈ 12,500 deliveries/s per core (with
1M connections, 200k connects/min and Redis in the path: a heavier setting
than one topic on loopback, so the comparison flatters us, and says so).
Each subscriber has a token of its own (a per-identity connection cap must
not turn N = 1000 into a test of that cap).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from rtnb.protocol.codec import encode_str
from rtnb.server import serve

SIZES = (1, 10, 100, 1000)
DELIVERIES = 200_000  # per configuration: M = DELIVERIES / N events
MAX_EVENTS = 40_000
MIN_EVENTS = 400  # at N = 1000: 400,000 deliveries
#: deliveries/s per server core published for Centrifugo (see the module docstring)
CENTRIFUGO_PER_CORE = 500_000 / 40
CHUNK = 500
REPEATS = 2
TIMEOUT = 120.0


def _events(m: int) -> list[tuple[str, str, dict[str, Any]]]:
    statuses = ("open", "ack", "resolved")
    services = ("checkout", "search", "auth", "billing")
    return [
        (
            "incident.updated",
            f"inc-{i % 1000}",
            {
                "status": statuses[i % 3],
                "severity": i % 5 + 1,
                "service": services[i % 4],
                "value": round(i * 0.731 % 1000, 3),
                "note": "x" * (i % 21),
            },
        )
        for i in range(m)
    ]


# -- subscriber process ----------------------------------------------------------------


async def _subscriber(url: str, token: str | None, topic: str, m: int, ready: Any) -> float:
    # no keepalive pings: 1,000 clients on one loop of a busy box answer pings late, and a
    # ping timeout is not what this measures
    async with ws_connect(
        url, max_size=None, max_queue=None, open_timeout=60, ping_interval=None
    ) as ws:
        if token is not None:
            await ws.send(msgspec.json.encode({"op": "authenticate", "token": token}).decode())
            await ws.send(msgspec.json.encode({"op": "subscribe", "topic": topic}).decode())
            while True:  # up to the snapshot: then we are live
                frame = msgspec.json.decode(await ws.recv())
                ops = (
                    [f["op"] for f in frame["messages"]]
                    if frame["op"] == "batch"
                    else [frame["op"]]
                )
                if "snapshot" in ops:
                    break
        ready()
        count = 0
        decode = msgspec.json.decode
        while count < m:
            frame = decode(await ws.recv())
            op = frame["op"]
            if op == "event":
                count += 1
            elif op == "batch":
                count += sum(1 for f in frame["messages"] if f["op"] == "event")
        return time.monotonic()


async def _run_clients(
    conn: Connection, url: str, tokens: list[str] | None, topic: str, n: int, m: int
) -> None:
    remaining = [n]
    all_ready = asyncio.Event()

    def ready() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            all_ready.set()

    tasks = [
        asyncio.create_task(_subscriber(url, tokens[i] if tokens else None, topic, m, ready))
        for i in range(n)
    ]
    await all_ready.wait()
    conn.send("ready")
    done = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    conn.send(max(done))


def _client_process(conn: Connection) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        asyncio.run(_run_clients(conn, *job))


# -- servers ------------------------------------------------------------------------------


class RawServer:
    """A bare websockets broadcaster on its own loop thread."""

    def __init__(self) -> None:
        self.clients: set[ServerConnection] = set()
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        async def handler(ws: ServerConnection) -> None:
            self.clients.add(ws)
            try:
                await ws.wait_closed()
            finally:
                self.clients.discard(ws)

        self._stop = self.loop.create_future()
        async with ws_serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._started.set()
            await self._stop

    async def _broadcast(self, frames: list[str]) -> None:
        for i in range(0, len(frames), CHUNK):
            for frame in frames[i : i + CHUNK]:
                websockets.broadcast(self.clients, frame)
            await asyncio.sleep(0)

    def broadcast(self, frames: list[str]) -> None:
        asyncio.run_coroutine_threadsafe(self._broadcast(frames), self.loop).result(TIMEOUT)

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(10)


def _publish_rtnb(srv: Any, topic: str, events: list[Any], published: list[Any]) -> None:
    for i in range(0, len(events), CHUNK):
        published.extend(srv.publish_many(topic, events[i : i + CHUNK], tenant="bench"))


def _measure(
    conn: Connection, job: tuple[Any, ...], publish: Any, n: int, m: int
) -> tuple[float, float]:
    """Deliveries per second, and per CPU-second of this (the server's) process."""
    conn.send(job)
    if not conn.poll(TIMEOUT):
        raise TimeoutError(f"{n} subscribers did not all subscribe in {TIMEOUT} s")
    assert conn.recv() == "ready"
    cpu0 = time.process_time()
    start = time.monotonic()
    publish()
    if not conn.poll(TIMEOUT):
        raise TimeoutError("subscribers did not receive every event")
    end: float = conn.recv()
    cpu = time.process_time() - cpu0
    return n * m / (end - start), n * m / max(cpu, 1e-9)


def run(conn: Connection) -> list[tuple[int, float, float, float, float, float]]:
    rows = []
    raw = RawServer()
    try:
        for n in SIZES:
            m = min(MAX_EVENTS, max(MIN_EVENTS, DELIVERIES // n))
            events = _events(m)
            best = {"rtnb": 0.0, "nobatch": 0.0, "raw": 0.0}
            per_core = {"rtnb": 0.0, "raw": 0.0}
            frames: list[str] = []
            for rep in range(REPEATS):
                for kind, options in (("rtnb", {}), ("nobatch", {"batch_max_messages": 1})):
                    with serve(
                        port=0,
                        heartbeat_interval=60.0,
                        admission_rate=None,
                        rate_limit=None,
                        **options,
                    ) as srv:
                        topic = f"fanout-{n}-{rep}"
                        srv.declare(topic)
                        tokens = [
                            srv.issue_token(tenant="bench", user=f"b{i}", ttl=600) for i in range(n)
                        ]
                        published: list[Any] = []
                        publish = functools.partial(_publish_rtnb, srv, topic, events, published)
                        rate, cpu_rate = _measure(
                            conn, (srv.ws_url, tokens, topic, n, m), publish, n, m
                        )
                        best[kind] = max(best[kind], rate)
                        if kind == "rtnb":
                            per_core["rtnb"] = max(per_core["rtnb"], cpu_rate)
                        if not frames:
                            frames = [encode_str(e) for e in published]
                raw_url = f"ws://127.0.0.1:{raw.port}"
                broadcast = functools.partial(raw.broadcast, frames)
                rate, cpu_rate = _measure(conn, (raw_url, None, "", n, m), broadcast, n, m)
                best["raw"] = max(best["raw"], rate)
                per_core["raw"] = max(per_core["raw"], cpu_rate)
            rows.append(
                (n, best["rtnb"], best["nobatch"], best["raw"], per_core["rtnb"], per_core["raw"])
            )
            print(f"  N={n}: done", file=sys.stderr, flush=True)
    finally:
        raw.stop()
    return rows


def main() -> int:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_client_process, args=(child,), daemon=True)
    proc.start()
    try:
        rows = run(parent)
    finally:
        with contextlib.suppress(Exception):
            parent.send(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    targets = {1: 0.5, 100: 0.3}
    print(
        f"server fan-out over loopback WebSocket (deliveries/s = N x events/s; best of {REPEATS})"
    )
    print(
        f"{'N':>4} {'rtnb':>12} {'rtnb no-batch':>14} {'raw websockets':>15} "
        f"{'rtnb/raw':>9} {'no-batch/raw':>13} {'target':>7}"
    )
    ok = True
    for n, rtnb_rate, nobatch, raw_rate, _, _ in rows:
        ratio = rtnb_rate / raw_rate
        target = targets.get(n)
        mark = ""
        if target is not None:
            mark = f">={target:.0%}" + (" ok" if ratio >= target else " MISS")
            ok = ok and ratio >= target
        print(
            f"{n:>4} {rtnb_rate:>12,.0f} {nobatch:>14,.0f} {raw_rate:>15,.0f} "
            f"{ratio:>9.2f} {nobatch / raw_rate:>13.2f} {mark:>7}"
        )
    print("targets met" if ok else "targets MISSED")
    print(
        "\nper server core: deliveries per CPU-second of the server process (publisher included),"
        f"\nbeside Centrifugo's published ~{CENTRIFUGO_PER_CORE:,.0f}/core (500k/s on 40 CPUs,"
        " 1M connections, Redis; centrifugal.dev 2020-02-10). rtnb coalesces a backlog into"
        "\nbatch frames (many events per WebSocket message); raw and Centrifugo's figure send one"
        " message per event"
    )
    print(f"{'N':>5} {'rtnb /core':>12} {'raw /core':>12} {'rtnb/Centrifugo':>16}")
    for n, _, _, _, rtnb_core, raw_core in rows:
        print(
            f"{n:>5} {rtnb_core:>12,.0f} {raw_core:>12,.0f} "
            f"{rtnb_core / CENTRIFUGO_PER_CORE:>16.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
