"""Idempotency keys: what a ``publishId`` on every publish costs, on every store.

For each store — memory, SQLite (``data=DIR``, ``fsync="always"``) and Redis (a real
``redis-server``, AOF ``appendfsync always``) — and two paths, the same publishes are
made with and without a key (a fresh ``publishId`` each, so none is a retry):

* ``POST /publish``: :data:`HTTP_EVENTS` requests, :data:`CONCURRENCY` in flight, from a
  client in its own process (raw HTTP/1.1, a connection per request: ``bench.durability``);
* ``srv.publish``: :data:`CONCURRENCY` threads in flight (group commit);
* ``publish_many``: batches of :data:`BATCH` events (the throughput path; a key per event).

Where the key costs most is ``publish_many`` on the memory store: ~12 µs of server work
per event there, of which a key adds ~4 µs (a 16-byte blake2b digest of the sorted JSON
content ~1 µs, remembering it ~1 µs, the key object and the in-flight check); on the
per-request paths the same ~4 µs is a few percent.

Keyed and unkeyed runs alternate, :data:`ROUNDS` times each on the same server, and the
ratio is of the medians (the machine is shared: alternation spreads its load over both).
Bar (issue 16): keyed ≥ 0.8× unkeyed throughput. Also printed: the cost of answering a
retry (every key of a ``publish_many`` batch already stored).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rtnb.server import ServerHandle, serve

CONCURRENCY = 32
HTTP_EVENTS = 1_500
DIRECT_EVENTS = 3_000
BATCH = 500
BATCHES = 20
ROUNDS = 5
_ids = itertools.count()


def _payload(i: int) -> dict[str, Any]:
    return {"status": ("open", "ack", "resolved")[i % 3], "value": i * 0.731, "note": "x" * 40}


def _http_client(port: int, token: str, keyed: bool, first: int) -> float:
    """In a child process: POST /publish throughput (events/s)."""
    import asyncio
    import json

    from bench.durability import _post

    def request(i: int) -> bytes:
        body: dict[str, Any] = {
            "topic": "h",
            "type": "x.updated",
            "entityId": f"e{i % 1000}",
            "payload": _payload(i),
        }
        if keyed:
            body["publishId"] = f"h{first + i}"
        data = json.dumps(body).encode()
        head = (
            f"POST /publish HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + data

    async def run() -> float:
        counter = iter(range(HTTP_EVENTS))

        async def worker() -> None:
            for i in counter:
                await _post(port, request(i))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return HTTP_EVENTS / (time.perf_counter() - start)

    return asyncio.run(run())


_CHILD: concurrent.futures.ProcessPoolExecutor | None = None


def _http(srv: ServerHandle, keyed: bool) -> float:
    assert _CHILD is not None
    token = srv.issue_token(tenant="acme", user="bench", role="admin")
    first = next(_ids) * 10_000_000  # fresh keys every run
    rate: float = _CHILD.submit(_http_client, srv.port, token, keyed, first).result()
    return rate


def _direct(srv: ServerHandle, keyed: bool) -> float:
    def one(i: int) -> None:
        key = f"k{next(_ids)}" if keyed else None
        srv.publish(
            "d", "x.updated", _payload(i), tenant="acme", entity_id=f"e{i % 1000}", publish_id=key
        )

    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
        start = time.perf_counter()
        list(pool.map(one, range(DIRECT_EVENTS)))
        return DIRECT_EVENTS / (time.perf_counter() - start)


def _batches(keyed: bool) -> list[list[Any]]:
    out = []
    for _ in range(BATCHES):
        batch: list[Any] = []
        for i in range(BATCH):
            event: tuple[Any, ...] = ("x.updated", f"e{i % 1000}", _payload(i))
            batch.append((*event, f"k{next(_ids)}") if keyed else event)
        out.append(batch)
    return out


def _many(srv: ServerHandle, keyed: bool, batches: list[list[Any]] | None = None) -> float:
    batches = batches or _batches(keyed)
    start = time.perf_counter()
    for batch in batches:
        srv.publish_many("m", batch, tenant="acme")
    return BATCH * len(batches) / (time.perf_counter() - start)


@contextlib.contextmanager
def _redis(directory: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "redis-server is missing; install it with: apt-get install -y redis-server"
        )
    import redis

    from tests.subproc import free_port

    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # waiting for a process to listen: no event to wait on
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(10)


def _measure(srv: ServerHandle, fn: Callable[[ServerHandle, bool], float]) -> tuple[float, float]:
    fn(srv, False)  # warm up (topic created, code paths hot)
    plain, keyed = [], []
    for r in range(ROUNDS):  # alternate which goes first, so neither always runs warmer
        for k in (False, True) if r % 2 == 0 else (True, False):
            (keyed if k else plain).append(fn(srv, k))
    return statistics.median(plain), statistics.median(keyed)


def main() -> None:
    global _CHILD
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as child:
        _CHILD = child
        _main()


def _main() -> None:
    rows: list[tuple[str, str, float, float]] = []
    retries: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_dir = Path(tmp) / "redis"
        redis_dir.mkdir()
        with _redis(redis_dir) as redis_url:
            stores: dict[str, Callable[[], ServerHandle]] = {
                "memory": lambda: serve(http_rate_limit=None),
                "sqlite": lambda: serve(data=f"{tmp}/data", http_rate_limit=None),
                "redis": lambda: serve(store=redis_url, http_rate_limit=None),
            }
            for name, make in stores.items():
                with make() as srv:
                    paths = (
                        ("POST /publish", _http),
                        ("srv.publish", _direct),
                        ("publish_many", _many),
                    )
                    for path, fn in paths:
                        plain, keyed = _measure(srv, fn)
                        rows.append((name, path, plain, keyed))
                    batches = _batches(True)
                    first = _many(srv, True, batches)
                    again = _many(srv, True, batches)  # every key stored: answered, not stored
                    retries.append((name, first, again))
    print(
        f"keyed (a fresh publishId per event) vs unkeyed publish throughput; medians of "
        f"{ROUNDS} alternating runs; POST /publish: {HTTP_EVENTS:,} requests; srv.publish: {DIRECT_EVENTS:,} events, {CONCURRENCY} in "
        f"flight; publish_many: {BATCHES} batches of {BATCH}"
    )
    print(f"{'store':<8}{'path':<15}{'unkeyed/s':>11}{'keyed/s':>11}{'ratio':>8}  bar ≥ 0.80")
    for name, path, plain, keyed in rows:
        ratio = keyed / plain
        verdict = "PASS" if ratio >= 0.8 else "MISS"
        print(f"{name:<8}{path:<15}{plain:>11,.0f}{keyed:>11,.0f}{ratio:>7.2f}×  {verdict}")
    print("retrying a whole publish_many batch (every key already stored: nothing stored):")
    for name, first, again in retries:
        print(f"  {name:<8} first {first:>9,.0f}/s   retried {again:>9,.0f}/s")


if __name__ == "__main__":
    main()
