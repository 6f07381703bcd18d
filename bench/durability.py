"""Durability: what acknowledging only durable events costs, beside write-behind and memory.

Three stores, measured side by side in one run:

* **durable** — ``serve(data=DIR)`` (``fsync="always"``, the default): a
  publish is answered once its group of appends is committed and fsynced;
* **write-behind** — ``serve(data=DIR, fsync="never")``: answered at once,
  written every 0.2 s (a crash loses the last moments);
* **memory** — no ``data``: nothing survives the process.

For each store and each path — ``srv.publish`` (thread-safe call into the
server loop) and real HTTP ``POST /publish`` (a fresh connection per request,
so the figures do not depend on keep-alive behaviour) — two figures:

1. **throughput**: :data:`CONCURRENCY` publishers in flight at once (group
   commit shares one fsync among everything that arrived meanwhile);
2. **acknowledgement latency at 1k events/s**: one publish scheduled every
   millisecond (open loop: a late answer does not delay the next request),
   latency from the scheduled time to the answer, p50/p99.

Bars (issue 9): durable throughput ≥ 50% of write-behind on each path; durable
ack p99 ≤ 10 ms at 1k events/s. Absolute rates drift with machine load; the
ratios are measured in the same run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from rtnb.server import ServerHandle, serve

THROUGHPUT_EVENTS = 6_000
CONCURRENCY = 32
RATE = 1_000.0  # events/s for the latency runs
LATENCY_SECONDS = 2.0
STORES = ("durable", "write-behind", "memory")


def _server(store: str, directory: str) -> ServerHandle:
    # No HTTP rate limit: the benchmark is the only client.
    options: dict[str, Any] = {"http_rate_limit": None}
    if store == "durable":
        return serve(data=f"{directory}-durable", **options)
    if store == "write-behind":
        return serve(data=f"{directory}-behind", fsync="never", **options)
    return serve(**options)


def _payload(i: int) -> dict[str, Any]:
    return {"status": ("open", "ack", "resolved")[i % 3], "value": i * 0.731, "note": "x" * 40}


# -- srv.publish ---------------------------------------------------------------------------


def _direct_throughput(srv: ServerHandle) -> float:
    def one(i: int) -> None:
        srv.publish("bench", "x.updated", _payload(i), tenant="acme", entity_id=f"e{i % 1000}")

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(200)))  # warm up
        start = time.perf_counter()
        list(pool.map(one, range(THROUGHPUT_EVENTS)))
        return THROUGHPUT_EVENTS / (time.perf_counter() - start)


def _direct_latency(srv: ServerHandle, rate: float) -> list[float]:
    n = int(rate * LATENCY_SECONDS)
    lags: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.05

    def slot(i: int) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing the open-loop schedule
        srv.publish("lat", "x.updated", _payload(i), tenant="acme", entity_id=f"e{i % 100}")
        with lock:
            lags.append((time.perf_counter() - due) * 1000)

    # Enough threads that a slow answer never delays the next scheduled request.
    with concurrent.futures.ThreadPoolExecutor(128) as pool:
        list(pool.map(slot, range(n)))
    return lags


# -- HTTP POST /publish ---------------------------------------------------------------------
#
# The HTTP client runs in its own process (so it does not share the server's
# GIL) and speaks raw HTTP/1.1 over asyncio streams, one fresh connection per
# request (``Connection: close``): a lean client, and figures that do not depend
# on keep-alive behaviour.


async def _post(port: int, request: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        response = await reader.read()
    finally:
        writer.close()
    if not response.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"POST /publish failed: {response[:200]!r}")


def _request(token: str, topic: str, i: int) -> bytes:
    body = json.dumps(
        {"topic": topic, "type": "x.updated", "entityId": f"e{i % 1000}", "payload": _payload(i)}
    ).encode()
    head = (
        f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def _http_client(port: int, token: str, kind: str, rate: float) -> float | list[float]:
    """Run in a child process: the throughput (events/s) or the latencies (ms)."""

    async def throughput() -> float:
        counter = iter(range(THROUGHPUT_EVENTS))

        async def worker() -> None:
            for i in counter:
                await _post(port, _request(token, "hbench", i))

        await asyncio.gather(*(_post(port, _request(token, "hbench", i)) for i in range(50)))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return THROUGHPUT_EVENTS / (time.perf_counter() - start)

    async def latency() -> list[float]:
        n = int(rate * LATENCY_SECONDS)
        requests = [_request(token, "hlat", i) for i in range(n)]
        lags: list[float] = []
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1

        async def slot(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))  # open-loop pacing
            await _post(port, requests[i])
            lags.append((loop.time() - due) * 1000)

        await asyncio.gather(*(slot(i) for i in range(n)))
        return lags

    return asyncio.run(throughput() if kind == "throughput" else latency())


def _in_child(srv: ServerHandle, kind: str, rate: float = RATE) -> Any:
    token = srv.issue_token(tenant="acme", user="bench", role="admin")
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_http_client, srv.port, token, kind, rate).result()


def _http_throughput(srv: ServerHandle) -> float:
    rate: float = _in_child(srv, "throughput")
    return rate


def _http_latency(srv: ServerHandle, rate: float) -> list[float]:
    lags: list[float] = _in_child(srv, "latency", rate)
    return lags


# -- report ------------------------------------------------------------------------------------


def _disk_commit(directory: str) -> tuple[float, float]:
    """p50/p99 ms of one bare SQLite commit with ``synchronous=FULL`` on this disk: the floor."""
    db = sqlite3.connect(f"{directory}/floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (v INTEGER)")
    lags = []
    for i in range(300):
        start = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.execute("COMMIT")
        lags.append((time.perf_counter() - start) * 1000)
    db.close()
    return _quantiles(lags)


def _quantiles(lags: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(lags, n=100)
    return q[49], q[98]


def main() -> None:
    ok = {True: "PASS", False: "MISS"}
    paths: dict[
        str, tuple[Callable[[ServerHandle], float], Callable[[ServerHandle, float], list[float]]]
    ]
    paths = {
        "srv.publish": (_direct_throughput, _direct_latency),
        "HTTP POST /publish": (_http_throughput, _http_latency),
    }
    rates: dict[tuple[str, str], float] = {}
    lags: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        floor = _disk_commit(directory)
        for store in STORES:
            with _server(store, f"{directory}/t") as srv:
                for path, (throughput, _) in paths.items():
                    rates[(path, store)] = throughput(srv)
        # Latency at 1k/s, or at half the slowest store's capacity on a machine too
        # loaded to serve 1k/s at all (then the run measures queueing, not storage).
        offered = {
            path: min(RATE, 0.5 * min(rates[(path, store)] for store in STORES)) for path in paths
        }
        for store in STORES:
            with _server(store, f"{directory}/l") as srv:
                for path, (_, latency) in paths.items():
                    lags[(path, store)] = _quantiles(latency(srv, offered[path]))
    print(
        f"throughput: {THROUGHPUT_EVENTS:,} publishes, {CONCURRENCY} in flight; "
        f"latency: open loop for {LATENCY_SECONDS:g} s at the rate shown"
    )
    header = f"{'path':<20}{'store':<14}{'events/s':>10}{'vs behind':>11}"
    print(f"{header}{'ack at':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for path in paths:
        behind = rates[(path, "write-behind")]
        for store in STORES:
            rate = rates[(path, store)]
            p50, p99 = lags[(path, store)]
            print(
                f"{path:<20}{store:<14}{rate:>10,.0f}{rate / behind:>10.2f}×"
                f"{offered[path]:>7,.0f}/s{p50:>9.2f}{p99:>9.2f}"
            )
    print(
        f"this disk: one bare SQLite commit + fsync takes p50 {floor[0]:.2f} ms, "
        f"p99 {floor[1]:.2f} ms (the floor of a durable acknowledgement)"
    )
    for path in paths:
        ratio = rates[(path, "durable")] / rates[(path, "write-behind")]
        p99 = lags[(path, "durable")][1]
        at = offered[path]
        bar = f"≤ 10 ms {ok[p99 <= 10]}" if at >= RATE else "bar is at 1k/s: NOT MEASURED"
        print(
            f"{path}: durable throughput {ratio:.2f}× write-behind (≥ 0.50× {ok[ratio >= 0.5]}); "
            f"durable ack p99 {p99:.2f} ms at {at:,.0f}/s ({bar})"
        )


if __name__ == "__main__":
    main()
