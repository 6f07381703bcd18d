"""End to end: reference server → client store over loopback.

1. Throughput: N events published in batches; time until the client has
   applied all of them, beside a raw ``websockets`` receive loop of the same
   frames from the same server in the same run (bar: rtnb ≥ 50% of raw). The
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

4. CPU time per event (issue 22, item 2): in a one-process bench the rate ratio
   mostly measures the shared server, so the CPU time of the client's runtime
   thread per applied event is printed beside the raw reader thread's per
   received event (``time.thread_time`` read *in* each thread; bar: raw / rtnb
   ≥ 0.8), with the server loop thread's and the publishing thread's CPU per
   published event beside them (all share one GIL: their sum bounds the rate).
   Measured at the existing rate (30,000 events as fast as ``publish_many``
   batches of 500 go) and at 100k events/s offered: ``publish_many`` batches of
   1,000 every 10 ms on one topic of 10,000 entities, memory store; the rate the
   publisher actually reached is printed (it is the server's publish path's ceiling).

Server, client and raw loop share this process (and two cores): absolute
rates drift with load; the ratio is measured side by side.
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
from rtnb.client.runtime import get_runtime
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


def _publish(srv: rtnb.ServerHandle, topic: str, load: Load) -> tuple[float, float]:
    """Publish ``load``; return the publish rate reached (events/s) and the
    publishing thread's CPU µs per event."""
    cpu0 = time.thread_time()
    start = time.perf_counter()
    period = None if load.rate is None else load.batch / load.rate
    due = start
    for lo in range(0, load.n, load.batch):
        srv.publish_many(
            topic,
            [
                ("tick.updated", f"e-{k % load.entities}", {"v": k, "note": "x" * 40})
                for k in range(lo, min(lo + load.batch, load.n))
            ],
            tenant="acme",
        )
        if period is not None:
            due += period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    rate = load.n / (time.perf_counter() - start)
    return rate, (time.thread_time() - cpu0) / load.n * 1e6


async def _thread_time() -> float:
    return time.thread_time()


def _runtime_cpu() -> float:
    """CPU seconds the client's runtime thread has used (read on that thread)."""
    coro: Coroutine[Any, Any, float] = _thread_time()
    return get_runtime().run(coro)


def _server_cpu(srv: rtnb.ServerHandle) -> float:
    """CPU seconds the server's loop thread has used (read on that thread)."""
    return srv._call(lambda rt: time.thread_time())


def rtnb_run(srv: rtnb.ServerHandle, transport: str, topic: str, load: Load) -> Run:
    token = srv.issue_token(tenant="acme", user="bench", role="viewer")
    conn = rtnb.connect(srv.url, token=token, transport=transport, shared=False)
    conn.wait_for("subscribed", 15)
    t = conn.subscribe(topic)
    while t.freshness.status != "live":
        time.sleep(0.01)
    state = t._state
    base, lost0 = state.applied, state.unrecoverable
    cpu0, srv0 = _runtime_cpu(), _server_cpu(srv)
    start = time.perf_counter()
    published, pub_us = _publish(srv, topic, load)
    deadline = time.monotonic() + 120
    # Done when every event was applied or logged lost: a client that falls more than
    # the server's retention behind (polling, under a burst) skips to a snapshot and
    # logs the skipped events gap_unrecoverable; it never applies them.
    while (
        state.applied - base + state.unrecoverable - lost0 < load.n and time.monotonic() < deadline
    ):
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    done = state.applied - base
    lost = state.unrecoverable - lost0
    cpu = _runtime_cpu() - cpu0
    server = _server_cpu(srv) - srv0
    conn.close()
    return Run(
        done / elapsed, cpu / max(done, 1) * 1e6, server / load.n * 1e6, published, pub_us, lost
    )


def raw_run(srv: rtnb.ServerHandle, topic: str, load: Load) -> Run:
    token = srv.issue_token(tenant="acme", user="raw", role="viewer")
    result: dict[str, float] = {}
    ready = threading.Event()
    n_events = load.n
    decode = msgspec.json.decode

    async def run() -> None:
        async with ws_connect(srv.ws_url, max_size=None, compression=None) as ws:
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
            result["t"] = time.perf_counter() - (start or time.perf_counter())

    th = threading.Thread(target=lambda: asyncio.run(run()))
    th.start()
    ready.wait(10)
    time.sleep(0.2)  # let the subscription settle (the raw loop has no state to wait on)
    srv0 = _server_cpu(srv)
    start = time.perf_counter()
    published, pub_us = _publish(srv, topic, load)
    th.join(120)
    elapsed = time.perf_counter() - start
    server = _server_cpu(srv) - srv0
    got = result.get("got", 0)
    return Run(
        n_events / elapsed,
        result.get("cpu", 0.0) / max(got, 1) * 1e6,
        server / n_events * 1e6,
        published,
        pub_us,
    )


def raw_rate(srv: rtnb.ServerHandle, topic: str) -> float:
    return raw_run(srv, topic, Load()).rate


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


def main() -> None:
    ok = {True: "PASS", False: "MISS"}
    with serve(port=0) as srv:
        for topic in ("raw", "ws", "sse", "poll", "latency", "raw-fast", "ws-fast"):
            srv.declare(topic)
        raw_at = raw_run(srv, "raw", Load())
        raw = raw_at.rate
        ws_at = rtnb_run(srv, "websocket", "ws", Load())
        sse_at = rtnb_run(srv, "sse", "sse", Load())
        poll_at = rtnb_run(srv, "polling", "poll", Load())
        runs = {"websocket": ws_at, "sse": sse_at, "polling": poll_at}
        rates = {name: run.rate for name, run in runs.items()}
        p50, p99 = latency(srv)
        fast = Load(FAST_EVENTS, FAST_BATCH, FAST_ENTITIES, FAST_RATE)
        raw_fast = raw_run(srv, "raw-fast", fast)
        ws_fast = rtnb_run(srv, "websocket", "ws-fast", fast)
        # Sequential requests from one identity: lift the per-user HTTP rate limit.
    with serve(port=0, http_rate_limit=None) as srv:
        srv.declare("http")
        http = http_latency(srv)
    print(f"{N:,} events published in batches of {BATCH}; one process, loopback")
    print(f"{'path':<34}{'events/s':>12}{'vs raw':>9}  bar")
    print(f"{'raw websockets receive loop':<34}{raw:>12,.0f}{1.0:>8.2f}×")
    for name, rate in rates.items():
        bar = f"≥ 0.50× {ok[rate / raw >= 0.5]}" if name == "websocket" else "(comparison)"
        print(f"{'rtnb ' + name + ' → store':<34}{rate:>12,.0f}{rate / raw:>8.2f}×  {bar}")
        if runs[name].lost:
            print(
                f"{'':<4}{runs[name].lost:,} events skipped as gap_unrecoverable: the client fell "
                "more than the server's retention behind and resynced from a snapshot"
            )
    sse_ok = sse_at.rate >= 50_000
    print(
        f"SSE → store: {sse_at.rate:,.0f} events/s (bar ≥ 50,000 {ok[sse_ok]}); client "
        f"{sse_at.cpu_us:.2f} µs/event (websocket {ws_at.cpu_us:.2f}), server {sse_at.server_us:.2f}"
    )
    print(
        f"publish→apply at 1k events/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms  p99 ≤ 5 ms {ok[p99 <= 5]}"
    )
    print("CPU time per event, thread_time of each thread (issue 22 item 2)")
    print(
        f"{'case':<34}{'published/s':>12}{'delivered/s':>12}{'vs raw':>8}"
        f"{'raw µs':>8}{'rtnb µs':>8}{'raw/rtnb':>9}{'server µs':>10}{'pub µs':>8}  bar"
    )
    for label, r, c in (
        (f"{N:,} in batches of {BATCH}, max rate", raw_at, ws_at),
        (f"{FAST_RATE // 1000}k/s offered, {FAST_ENTITIES:,} entities", raw_fast, ws_fast),
    ):
        ratio = r.cpu_us / c.cpu_us if c.cpu_us else 0.0
        print(
            f"{label:<34}{c.published:>12,.0f}{c.rate:>12,.0f}{c.rate / r.rate:>7.2f}×"
            f"{r.cpu_us:>8.2f}{c.cpu_us:>8.2f}{ratio:>8.2f}×{c.server_us:>10.2f}{c.publisher_us:>8.2f}"
            f"  ≥ 0.80× {ok[ratio >= 0.8]}"
        )
    print(
        f"  (raw reader run of the same cases: published {raw_at.published:,.0f}/s and "
        f"{raw_fast.published:,.0f}/s, server {raw_at.server_us:.2f} and "
        f"{raw_fast.server_us:.2f} µs/event)"
    )
    print(f"{HTTP_REQUESTS} sequential HTTP requests each; mean ms per request")
    print(f"{'request':<34}{'kept-alive':>12}{'fresh':>9}{'ratio':>8}  bar")
    for name, (kept, fresh) in http.items():
        label = "POST /publish" if name == "publish" else "GET /poll (wait=0, per-poll cost)"
        ratio = kept / fresh
        print(f"{label:<34}{kept:>12.2f}{fresh:>9.2f}{ratio:>7.2f}×  ≤ 1.00× {ok[ratio <= 1.0]}")


if __name__ == "__main__":
    main()
