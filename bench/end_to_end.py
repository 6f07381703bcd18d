"""End to end: reference server → client store over loopback.

1. Throughput: N events published in batches; time until the client has
   applied all of them, beside a raw ``websockets`` receive loop of the same
   frames from the same server (bar: rtnb ≥ 0.8× raw, issue 22 item 2). The
   raw loop decodes each frame (``msgspec.json.decode``, untyped) and counts its
   events: the least a client can do with a frame.
   SSE and polling are measured the same way for comparison; SSE also with its
   client's CPU per event (issue 22: SSE into the store ≥ 50k events/s).
2. Latency at 1k events/s: publish one event per millisecond and measure
   publish (the server's ``occurredAt``) → apply (an ``on_event`` callback on
   the client) p50/p99 (bar: p99 ≤ 5 ms).

3. HTTP request latency: sequential ``POST /publish`` and ``GET /poll`` (the
   polling transport's per-poll cost, ``wait=0`` with a current cursor) over one
   kept-alive connection, beside the same requests each on a fresh connection
   (bar: kept-alive ≤ fresh — with Nagle's algorithm on the accepted sockets a
   kept-alive response took ~44 ms, a fresh one ~1 ms).

4. CPU time per event (issue 22, item 2): the CPU time of the client's runtime
   thread per applied event beside the raw reader thread's per received event
   (``time.thread_time`` read *in* each thread; bar: raw / rtnb ≥ 0.8), with the
   server loop thread's and the publishing thread's CPU per published event
   (reported by the server process). Measured at the existing rate (30,000
   events as fast as ``publish_many`` batches of 500 go) and at 100k events/s
   offered: ``publish_many`` batches of 1,000 every 10 ms on one topic of 10,000
   entities, memory store; the rate the publisher actually reached is printed.

The throughput cases (1 and 4) run the server and its publisher in a process of
their own (``bench/_table_server.py``), so the server does not share this
process's GIL with the client: the rate ratio then measures the readers, not the
server. The raw reader and the rtnb client read that one server process, each
alone, alternately (``ROUNDS`` rounds, each on fresh topics); medians are printed
with the range over the rounds. The latency and HTTP cases serve in this process,
as before. Absolute rates drift with load (two cores shared); compare ratios.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from websockets.asyncio.client import connect as ws_connect

import rtnb
from bench._table_server import Server
from rtnb.client.runtime import get_runtime
from rtnb.protocol.urls import ws_url
from rtnb.server import serve

N = 30_000
BATCH = 500
LATENCY_EVENTS = 3_000
HTTP_REQUESTS = 300
#: the 100k events/s case: offered rate, batch, entities, events in all
FAST_RATE = 100_000
FAST_BATCH = 1_000
FAST_ENTITIES = 10_000
FAST_EVENTS = 300_000
#: rounds of (raw reader, rtnb client) per throughput case, alternated
ROUNDS = 3
#: events the server process keeps per topic (a reader further behind resyncs)
RETENTION = 100_000


@dataclass
class Load:
    """What to publish: ``n`` events in ``batch``-event ``publish_many`` calls over
    ``entities`` entities, as fast as they go (``rate`` None) or paced to ``rate``/s."""

    n: int = N
    batch: int = BATCH
    entities: int = 1000
    rate: float | None = None


@dataclass
class Run:
    rate: float  # events/s delivered: first publish → last event received/applied
    cpu_us: float  # µs of the receiving thread's CPU time per event
    server_us: float  # µs of the server loop thread's CPU time per event
    published: float  # events/s the publisher reached
    publisher_us: float = 0.0  # µs of the publishing thread's CPU time per event
    lost: int = 0  # events the client logged gap_unrecoverable (fell behind the retention)


class Bench:
    """The server process and fresh topics on it."""

    def __init__(self) -> None:
        self.server = Server(0, RETENTION)
        self.url: str = self.server.hello["url"]
        self._topics = 0

    def topic(self, name: str) -> str:
        self._topics += 1
        topic = f"{name}-{self._topics}"
        self.server.ask({"cmd": "declare", "topic": topic})
        return topic

    def token(self, user: str) -> str:
        token: str = self.server.ask({"cmd": "token", "user": user})["token"]
        return token

    def loop_cpu(self) -> float:
        """CPU seconds of the server's loop thread (read on it, in the server process)."""
        cpu: float = self.server.ask({"cmd": "cpu"})["loop"]
        return cpu

    def publish(self, topic: str, load: Load) -> None:
        """Start publishing ``load`` (answered by :meth:`published` when done)."""
        self.server.send(
            {"cmd": "publish", "topic": topic, "n": load.n, "batch": load.batch,
             "entities": load.entities, "rate": load.rate}
        )  # fmt: skip

    def published(self) -> tuple[float, float]:
        answer = self.server.read()
        return float(answer["published"]), float(answer["publisher_us"])

    def stop(self) -> None:
        self.server.stop()


async def _thread_time() -> float:
    return time.thread_time()


def _runtime_cpu() -> float:
    """CPU seconds the client's runtime thread has used (read on that thread)."""
    coro: Coroutine[Any, Any, float] = _thread_time()
    return get_runtime().run(coro)


def rtnb_run(bench: Bench, transport: str, name: str, load: Load) -> Run:
    topic = bench.topic(name)
    conn = rtnb.connect(bench.url, token=bench.token("bench"), transport=transport, shared=False)
    conn.wait_for("subscribed", 15)
    t = conn.subscribe(topic)
    while t.freshness.status != "live":
        time.sleep(0.01)
    state = t._state
    base, lost0 = state.applied, state.unrecoverable
    srv0 = bench.loop_cpu()
    cpu0 = _runtime_cpu()
    start = time.perf_counter()
    bench.publish(topic, load)
    deadline = time.monotonic() + 120
    # Done when every event was applied or logged lost: a client that falls more than
    # the server's retention behind (polling, under a burst) skips to a snapshot and
    # logs the skipped events gap_unrecoverable; it never applies them.
    while (
        state.applied - base + state.unrecoverable - lost0 < load.n and time.monotonic() < deadline
    ):
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    cpu = _runtime_cpu() - cpu0
    published, pub_us = bench.published()
    server = bench.loop_cpu() - srv0
    done = state.applied - base
    lost = state.unrecoverable - lost0
    conn.close()
    return Run(
        done / elapsed, cpu / max(done, 1) * 1e6, server / load.n * 1e6, published, pub_us, lost
    )


def raw_run(bench: Bench, load: Load) -> Run:
    topic = bench.topic("raw")
    token = bench.token("raw")
    result: dict[str, float] = {}
    ready = threading.Event()
    n_events = load.n
    decode = msgspec.json.decode

    async def run() -> None:
        async with ws_connect(ws_url(bench.url), max_size=None, compression=None) as ws:
            await ws.send(json.dumps({"op": "authenticate", "token": token}))
            await ws.recv()
            await ws.send(json.dumps({"op": "subscribe", "topic": topic}))
            got = 0
            ready.set()
            start = None
            cpu0 = time.thread_time()
            async for msg in ws:
                decode(msg)  # a raw client at least decodes what it receives
                n = msg.count('"op":"event"') if isinstance(msg, str) else 0
                if n and start is None:
                    start = time.perf_counter()
                got += n
                if got >= n_events:
                    break
            result["cpu"] = time.thread_time() - cpu0
            result["got"] = got

    th = threading.Thread(target=lambda: asyncio.run(run()))
    th.start()
    ready.wait(10)
    time.sleep(0.2)  # let the subscription settle (the raw loop has no state to wait on)
    srv0 = bench.loop_cpu()
    start = time.perf_counter()
    bench.publish(topic, load)
    th.join(120)
    elapsed = time.perf_counter() - start
    published, pub_us = bench.published()
    server = bench.loop_cpu() - srv0
    got = result.get("got", 0)
    return Run(
        n_events / elapsed,
        result.get("cpu", 0.0) / max(got, 1) * 1e6,
        server / n_events * 1e6,
        published,
        pub_us,
    )


def latency(srv: rtnb.ServerHandle) -> tuple[float, float]:
    token = srv.issue_token(tenant="acme", user="lat", role="viewer")
    conn = rtnb.connect(srv.url, token=token, transport="websocket", shared=False)
    conn.wait_for("subscribed", 15)
    t = conn.subscribe("latency")
    while t.freshness.status != "live":
        time.sleep(0.01)
    lags: list[float] = []
    t.on_event(lambda ev, outcome: lags.append((time.time() - ev.occurred_at.timestamp()) * 1e3))
    period = 1 / 1000
    nxt = time.perf_counter()
    for k in range(LATENCY_EVENTS):
        srv.publish("latency", "tick.updated", {"v": k}, tenant="acme", entity_id=f"e-{k % 10}")
        nxt += period
        delay = nxt - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 10
    while len(lags) < LATENCY_EVENTS and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.close()
    q = statistics.quantiles(lags, n=100)
    return q[49], q[98]


def _http(sock: socket.socket, request: bytes) -> bytes:
    """Send one HTTP/1.1 request on ``sock`` and read its whole response."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    return body


def http_latency(srv: rtnb.ServerHandle) -> dict[str, tuple[float, float]]:
    """Mean ms per request, (kept-alive, fresh connection), for /publish and /poll."""
    admin = srv.issue_token(tenant="acme", user="bench", role="admin")
    viewer = srv.issue_token(tenant="acme", user="poller")
    body = json.dumps({"topic": "http", "type": "x.set", "entityId": "e", "payload": {"v": 1}})
    publish = (
        f"POST /publish HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    srv.publish("http", "x.set", {"v": 0}, tenant="acme", entity_id="e")
    with socket.create_connection((srv.host, srv.port)) as sock:
        first = _http(
            sock,
            f"GET /poll?topic=http HTTP/1.1\r\nHost: bench\r\n"
            f"Authorization: Bearer {viewer}\r\n\r\n".encode(),
        )
    cursor = json.loads(first)["cursor"]
    poll = (
        f"GET /poll?topic=http&wait=0 HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {viewer}\r\nLast-Event-ID: {cursor}\r\n\r\n"
    ).encode()
    out: dict[str, tuple[float, float]] = {}
    for name, request in (("publish", publish), ("poll", poll)):
        with socket.create_connection((srv.host, srv.port)) as sock:
            _http(sock, request)  # warm up
            start = time.perf_counter()
            for _ in range(HTTP_REQUESTS):
                _http(sock, request)
            kept = (time.perf_counter() - start) / HTTP_REQUESTS * 1e3
        start = time.perf_counter()
        for _ in range(HTTP_REQUESTS):
            with socket.create_connection((srv.host, srv.port)) as sock:
                _http(sock, request)
        fresh = (time.perf_counter() - start) / HTTP_REQUESTS * 1e3
        out[name] = (kept, fresh)
    return out


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _span(values: list[float], fmt: str = ".2f") -> str:
    return f"{min(values):{fmt}}–{max(values):{fmt}}"


def main() -> None:
    ok = {True: "PASS", False: "MISS"}
    aim = {True: "reached", False: "not reached"}
    fast = Load(FAST_EVENTS, FAST_BATCH, FAST_ENTITIES, FAST_RATE)
    cases = {"max": Load(), "fast": fast}
    raws: dict[str, list[Run]] = {"max": [], "fast": []}
    wss: dict[str, list[Run]] = {"max": [], "fast": []}
    sses: list[Run] = []
    bench = Bench()
    try:
        for _ in range(ROUNDS):
            for case, load in cases.items():
                raws[case].append(raw_run(bench, load))
                wss[case].append(rtnb_run(bench, "websocket", "ws", load))
            sses.append(rtnb_run(bench, "sse", "sse", Load()))
        poll_at = rtnb_run(bench, "polling", "poll", Load())
    finally:
        bench.stop()
    with serve(port=0) as srv:
        srv.declare("latency")
        p50, p99 = latency(srv)
    # Sequential requests from one identity: lift the per-user HTTP rate limit.
    with serve(port=0, http_rate_limit=None) as srv:
        srv.declare("http")
        http = http_latency(srv)
    raw = _med([r.rate for r in raws["max"]])
    print(
        f"{N:,} events published in batches of {BATCH}; server + publisher in their own "
        f"process, loopback; medians of {ROUNDS} alternated rounds (range)"
    )
    print(f"{'path':<34}{'events/s':>12}{'vs raw':>9}  bar")
    print(f"{'raw websockets receive loop':<34}{raw:>12,.0f}{1.0:>8.2f}×")
    runs = {"websocket": wss["max"], "sse": sses, "polling": [poll_at]}
    for name, rs in runs.items():
        rate = _med([r.rate for r in rs])
        bar = f"≥ 0.80× {ok[rate / raw >= 0.8]}" if name == "websocket" else "(comparison)"
        print(f"{'rtnb ' + name + ' → store':<34}{rate:>12,.0f}{rate / raw:>8.2f}×  {bar}")
        lost = sum(r.lost for r in rs)
        if lost:
            print(
                f"{'':<4}{lost:,} events skipped as gap_unrecoverable: the client fell "
                "more than the server's retention behind and resynced from a snapshot"
            )
    sse_rate = _med([r.rate for r in sses])
    print(
        f"SSE → store: {sse_rate:,.0f} events/s ({_span([r.rate for r in sses], ',.0f')}; "
        f"bar ≥ 50,000 {ok[sse_rate >= 50_000]}); client "
        f"{_med([r.cpu_us for r in sses]):.2f} µs/event ({_span([r.cpu_us for r in sses])}; "
        f"websocket {_med([r.cpu_us for r in wss['max']]):.2f}), "
        f"server {_med([r.server_us for r in sses]):.2f}"
    )
    print(
        f"publish→apply at 1k events/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms  p99 ≤ 5 ms {ok[p99 <= 5]}"
    )
    print(
        "CPU time per event, thread_time of each thread (issue 22 item 2; an aim: the raw reader "
        "only decodes, the client also dedupes, orders, merges and logs each event)"
    )
    print(
        f"{'case':<34}{'published/s':>12}{'delivered/s':>12}{'vs raw':>8}"
        f"{'raw µs':>8}{'rtnb µs':>8}{'raw/rtnb':>9}{'server µs':>10}{'pub µs':>8}  aim"
    )
    labels = {
        "max": f"{N:,} in batches of {BATCH}, max rate",
        "fast": f"{FAST_RATE // 1000}k/s offered, {FAST_ENTITIES:,} entities",
    }
    for case, label in labels.items():
        r, c = raws[case], wss[case]
        ratios = [a.cpu_us / b.cpu_us if b.cpu_us else 0.0 for a, b in zip(r, c, strict=True)]
        rate_ratios = [b.rate / a.rate for a, b in zip(r, c, strict=True)]
        ratio = _med(ratios)
        print(
            f"{label:<34}{_med([x.published for x in c]):>12,.0f}{_med([x.rate for x in c]):>12,.0f}"
            f"{_med(rate_ratios):>7.2f}×{_med([x.cpu_us for x in r]):>8.2f}"
            f"{_med([x.cpu_us for x in c]):>8.2f}{ratio:>8.2f}×{_med([x.server_us for x in c]):>10.2f}"
            f"{_med([x.publisher_us for x in c]):>8.2f}  ≥ 0.80× {aim[ratio >= 0.8]}"
        )
        print(
            f"{'':<4}rounds: raw µs {_span([x.cpu_us for x in r])}, rtnb µs "
            f"{_span([x.cpu_us for x in c])}, raw/rtnb {_span(ratios)}, rate vs raw "
            f"{_span(rate_ratios)}; raw run: published {_med([x.published for x in r]):,.0f}/s, "
            f"server {_med([x.server_us for x in r]):.2f} µs/event"
        )
        lost = [x.lost for x in c]
        if any(lost):
            print(
                f"{'':<4}LOST: {sum(lost):,} events skipped as gap_unrecoverable over the rounds "
                f"({', '.join(f'{n:,}' for n in lost)}): the client fell more than the server's "
                "retention behind (cut as a slow consumer, then resynced from a snapshot); "
                "delivered/s counts only applied events"
            )
    print(f"{HTTP_REQUESTS} sequential HTTP requests each; mean ms per request")
    print(f"{'request':<34}{'kept-alive':>12}{'fresh':>9}{'ratio':>8}  bar")
    for name, (kept, fresh) in http.items():
        label = "POST /publish" if name == "publish" else "GET /poll (wait=0, per-poll cost)"
        ratio = kept / fresh
        print(f"{label:<34}{kept:>12.2f}{fresh:>9.2f}{ratio:>7.2f}×  ≤ 1.00× {ok[ratio <= 1.0]}")


if __name__ == "__main__":
    main()
