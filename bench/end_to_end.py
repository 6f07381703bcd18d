"""End to end: reference server → client store over loopback.

1. Throughput: N events published in batches; time until the client has
   applied all of them, beside a raw ``websockets`` receive loop of the same
   frames from the same server in the same run (bar: rtnb ≥ 50% of raw).
   SSE and polling are measured the same way for comparison.
2. Latency at 1k events/s: publish one event per millisecond and measure
   publish (the server's ``occurredAt``) → apply (an ``on_event`` callback on
   the client) p50/p99 (bar: p99 ≤ 5 ms).

Server, client and raw loop share this process (and two cores): absolute
rates drift with load; the ratio is measured side by side.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time

from websockets.asyncio.client import connect as ws_connect

import rtnb
from rtnb.server import serve

N = 30_000
BATCH = 500
LATENCY_EVENTS = 3_000


def _publish(srv: rtnb.ServerHandle, topic: str, n: int, start: int = 0) -> None:
    for lo in range(start, start + n, BATCH):
        srv.publish_many(
            topic,
            [
                ("tick.updated", f"e-{k % 1000}", {"v": k, "note": "x" * 40})
                for k in range(lo, min(lo + BATCH, start + n))
            ],
            tenant="acme",
        )


def rtnb_rate(srv: rtnb.ServerHandle, transport: str, topic: str) -> float:
    token = srv.issue_token(tenant="acme", user="bench", role="viewer")
    conn = rtnb.connect(srv.url, token=token, transport=transport, shared=False)
    conn.wait_for("subscribed", 15)
    t = conn.subscribe(topic)
    while t.freshness.status != "live":
        time.sleep(0.01)
    base = t._state.applied
    start = time.perf_counter()
    _publish(srv, topic, N)
    deadline = time.monotonic() + 120
    while t._state.applied - base < N and time.monotonic() < deadline:
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    done = t._state.applied - base
    conn.close()
    return done / elapsed


def raw_rate(srv: rtnb.ServerHandle, topic: str) -> float:
    token = srv.issue_token(tenant="acme", user="raw", role="viewer")
    result: dict[str, float] = {}
    ready = threading.Event()

    async def run() -> None:
        async with ws_connect(srv.ws_url, max_size=None, compression=None) as ws:
            await ws.send(json.dumps({"op": "authenticate", "token": token}))
            await ws.recv()
            await ws.send(json.dumps({"op": "subscribe", "topic": topic}))
            got = 0
            ready.set()
            start = None
            async for msg in ws:
                n = msg.count('"op":"event"') if isinstance(msg, str) else 0
                if n and start is None:
                    start = time.perf_counter()
                got += n
                if got >= N:
                    break
            result["t"] = time.perf_counter() - (start or time.perf_counter())

    th = threading.Thread(target=lambda: asyncio.run(run()))
    th.start()
    ready.wait(10)
    time.sleep(0.2)  # let the subscription settle (the raw loop has no state to wait on)
    start = time.perf_counter()
    _publish(srv, topic, N)
    th.join(120)
    return N / (time.perf_counter() - start)


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


def main() -> None:
    ok = {True: "PASS", False: "MISS"}
    with serve(port=0) as srv:
        for topic in ("raw", "ws", "sse", "poll", "latency"):
            srv.declare(topic)
        raw = raw_rate(srv, "raw")
        rates = {
            "websocket": rtnb_rate(srv, "websocket", "ws"),
            "sse": rtnb_rate(srv, "sse", "sse"),
            "polling": rtnb_rate(srv, "polling", "poll"),
        }
        p50, p99 = latency(srv)
    print(f"{N:,} events published in batches of {BATCH}; one process, loopback")
    print(f"{'path':<34}{'events/s':>12}{'vs raw':>9}  bar")
    print(f"{'raw websockets receive loop':<34}{raw:>12,.0f}{1.0:>8.2f}×")
    for name, rate in rates.items():
        bar = f"≥ 0.50× {ok[rate / raw >= 0.5]}" if name == "websocket" else "(comparison)"
        print(f"{'rtnb ' + name + ' → store':<34}{rate:>12,.0f}{rate / raw:>8.2f}×  {bar}")
    print(
        f"publish→apply at 1k events/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms  p99 ≤ 5 ms {ok[p99 <= 5]}"
    )


if __name__ == "__main__":
    main()
