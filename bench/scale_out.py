"""Scale-out: the memory store beside Redis with one and two gateways, and failover.

A real ``redis-server`` (AOF, ``appendfsync always``: the durable setting) runs
on a free port in a temp dir. Three configurations, each with
:data:`SUBSCRIBERS` WebSocket subscribers (plain ``websockets`` clients in a
separate process, decoding every frame):

* **memory / 1 process** — ``rtnb.serve()`` (in this process);
* **redis / 1 gateway** — ``rtnb.serve(store=redis://…)`` (in this process);
* **redis / 2 gateways** — that gateway plus a second one, ``python -m rtnb serve
  --store …`` in its own process; subscribers spread half and half.

Events are published with ``publish_many`` through the in-process gateway.

* *Throughput*: :data:`EVENTS` events as fast as they go; delivered events/s =
  subscribers × events / (first publish → last subscriber's last event).
* *Lag*: :data:`RATE` events/s for :data:`LAG_SECONDS` s (chunks of 10 every
  10 ms); each event carries its publish time, each subscriber notes when it
  decoded it: publish → receive p50/p99 (receive = the subscriber decoded the
  frame; an ``rtnb.connect`` client applies it microseconds later).
* *Split*: the redis / 1 gateway lag run again, instrumented (:class:`_Split`):
  publish → acknowledged, the ``APPEND`` round trip, ingest + fan-out, Pub/Sub
  delivery; then the same lag with ``appendfsync everysec`` (``CONFIG SET``).
* *Failover*: an ``rtnb.connect([gw1, gw2])`` client with ``Backoff(base=0.2,
  cap=1.0)``; the gateway it is on is killed with SIGKILL (then restarted), and
  the time until the client is live again (on the other gateway) is measured,
  :data:`KILLS` times (p99 over 20 kills is their slowest).

Bars (issue 13): redis / 1 gateway ≥ 50% of memory's throughput; lag p99 ≤ 10 ms
through Redis at 1k events/s; failover live again within the backoff cap + 2 s (p99).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec
import redis
from websockets.asyncio.client import connect as ws_connect

import rtnb
from rtnb.core.backoff import Backoff
from rtnb.server import serve

SUBSCRIBERS = 200
#: Subscribers in the second lag run: 1k events/s x 200 subscribers is 200k deliveries/s, more
#: than this machine delivers at all (see the throughput column), so that lag is queueing.
LAG_SUBSCRIBERS = 10
EVENTS = 3_000
RATE = 1_000
LAG_SECONDS = 3.0
KILLS = 20
TIMEOUT = 120.0
SECRET = "ab" * 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- subscriber process ---------------------------------------------------------------------


async def _subscriber(url: str, token: str, topic: str, m: int, ready: Any) -> list[float]:
    lags: list[float] = []
    async with ws_connect(url, max_size=None, max_queue=None) as ws:
        await ws.send(msgspec.json.encode({"op": "authenticate", "token": token}).decode())
        await ws.send(msgspec.json.encode({"op": "subscribe", "topic": topic}).decode())
        while True:
            frame = msgspec.json.decode(await ws.recv())
            ops = [f["op"] for f in frame["messages"]] if frame["op"] == "batch" else [frame["op"]]
            if "snapshot" in ops:
                break
        ready()
        count = 0
        while count < m:
            frame = msgspec.json.decode(await ws.recv())
            now = time.time()
            frames = frame["messages"] if frame["op"] == "batch" else [frame]
            for f in frames:
                if f["op"] == "event":
                    count += 1
                    lags.append(now - f["payload"]["t"])
    return lags


async def _run_clients(
    conn: Connection, urls: list[str], token: str | list[str], topic: str, m: int, n: int
) -> None:
    tokens = token if isinstance(token, list) else [token]
    remaining = [n]
    all_ready = asyncio.Event()

    def ready() -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            all_ready.set()

    tasks = [
        asyncio.create_task(
            _subscriber(urls[i % len(urls)], tokens[i % len(tokens)], topic, m, ready)
        )
        for i in range(n)
    ]
    await all_ready.wait()
    conn.send("ready")
    lags = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    end = time.time()
    flat = sorted(x for one in lags for x in one)
    conn.send((end, flat[len(flat) // 2], flat[int(len(flat) * 0.99)]))


def _client_process(conn: Connection) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        asyncio.run(_run_clients(conn, *job))


# -- servers ------------------------------------------------------------------------------


class Redis:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "redis-server is missing; install it with: apt-get install -y redis-server"
            )
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


class Gateway:
    """``python -m rtnb serve --store URL`` in its own process."""

    def __init__(self, store: str, secret_file: Path, port: int | None = None) -> None:
        self.store, self.secret_file = store, secret_file
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "rtnb", "serve", "--store", store),
                *("--secret-file", str(secret_file), "--port", str(self.port)),
                *("--log-level", "error", "--heartbeat", "60"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if f":{self.port}" not in line:
            raise RuntimeError(f"gateway did not start: {line!r}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _events(m: int, start: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    return [("tick.set", f"e{i % 100}", {"i": i, "t": 0.0}) for i in range(start, start + m)]


def _stamp(
    events: list[tuple[str, str, dict[str, Any]]],
) -> list[tuple[str, str, dict[str, Any]]]:
    now = time.time()
    return [(t, e, {**p, "t": now}) for t, e, p in events]


def _measure(conn: Connection, srv: Any, urls: list[str], topic: str) -> dict[str, float]:
    # One viewer per subscriber: one identity may hold max_connections_per_identity (64).
    token = [srv.issue_token(tenant="bench", user=f"b{i}", ttl=3600) for i in range(SUBSCRIBERS)]
    out: dict[str, float] = {}
    # throughput
    srv.publish_many(topic, [("tick.set", "e0", {"i": -1, "t": time.time()})], tenant="bench")
    conn.send((urls, token, topic, EVENTS, SUBSCRIBERS))
    assert conn.recv() == "ready"
    events = _events(EVENTS)
    start = time.time()
    for i in range(0, EVENTS, 500):
        srv.publish_many(topic, _stamp(events[i : i + 500]), tenant="bench")
    if not conn.poll(TIMEOUT):
        raise TimeoutError("subscribers did not receive every event")
    end, _, _ = conn.recv()
    out["throughput"] = SUBSCRIBERS * EVENTS / (end - start)
    # lag at RATE events/s, with every subscriber, then with LAG_SUBSCRIBERS
    for n, suffix in ((SUBSCRIBERS, ""), (LAG_SUBSCRIBERS, "_few")):
        out["p50_ms" + suffix], out["p99_ms" + suffix] = _lag(conn, srv, urls, token, topic, n)
    return out


def _lag(
    conn: Connection,
    srv: Any,
    urls: list[str],
    token: str | list[str],
    topic: str,
    n: int,
    acks: list[float] | None = None,
) -> tuple[float, float]:
    """Publish → receive p50/p99 in ms at :data:`RATE` events/s for :data:`LAG_SECONDS` s.

    ``acks``: collects how long each ``publish_many`` took to be acknowledged.
    """
    m = int(RATE * LAG_SECONDS)
    conn.send((urls, token, topic, m, n))
    assert conn.recv() == "ready"
    events = _events(m)
    t0 = time.monotonic()
    for i in range(0, m, 10):
        due = t0 + i / RATE
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the publisher, not waiting for a condition
        start = time.perf_counter()
        srv.publish_many(topic, _stamp(events[i : i + 10]), tenant="bench")
        if acks is not None:
            acks.append(time.perf_counter() - start)
    if not conn.poll(TIMEOUT):
        raise TimeoutError("subscribers did not receive every event")
    _, p50, p99 = conn.recv()
    return p50 * 1000, p99 * 1000


class _Split:
    """Where the time of a commit round through Redis goes, in this (the gateway's) process.

    Wraps the gateway's ``Bridge`` while active: the ``APPEND`` round trip (Lua, AOF
    write and fsync, loopback), the ingest and fan-out of each event, and the Pub/Sub
    delivery of the same group back to a gateway (measured from its ingest from the
    reply to the message's arrival: what another gateway waits on top of the append).
    """

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {"append": [], "fanout": [], "pubsub": []}
        self._ingested: dict[tuple[Any, int], float] = {}

    def __enter__(self) -> _Split:
        from rtnb.server import redis_store

        bridge = redis_store.Bridge
        self._orig = (bridge.append, bridge.ingest, bridge.on_message)
        orig_append, orig_ingest, orig_message = self._orig
        times, ingested = self.times, self._ingested

        async def append(b: Any, *args: Any) -> Any:
            t0 = time.perf_counter()
            out = await orig_append(b, *args)
            times["append"].append(time.perf_counter() - t0)
            return out

        def ingest(b: Any, topic_log: Any, seq: int, body: bytes) -> Any:
            t0 = time.perf_counter()
            out = orig_ingest(b, topic_log, seq, body)
            t1 = time.perf_counter()
            times["fanout"].append(t1 - t0)
            ingested.setdefault((topic_log.key, seq), t1)
            return out

        async def on_message(b: Any, data: bytes) -> None:
            member, _, first, _ = data.split(b"\n", 3)
            t = ingested.get((tuple(msgspec.json.decode(member)), int(first)))
            if t is not None:
                times["pubsub"].append(time.perf_counter() - t)
            await orig_message(b, data)

        for name, fn in (("append", append), ("ingest", ingest), ("on_message", on_message)):
            setattr(bridge, name, fn)
        return self

    def __exit__(self, *exc: object) -> None:
        from rtnb.server import redis_store

        bridge = redis_store.Bridge
        for name, fn in zip(("append", "ingest", "on_message"), self._orig, strict=True):
            setattr(bridge, name, fn)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


def _failover(redis_url: str, secret_file: Path) -> list[float]:
    gws = [Gateway(redis_url, secret_file), Gateway(redis_url, secret_file)]
    pub = serve(port=0, store=redis_url, secret=bytes.fromhex(SECRET), heartbeat_interval=60.0)
    pub.publish("fo", "x.set", {"i": 0}, tenant="bench", entity_id="e")
    token = pub.issue_token(tenant="bench", user="fo", role="viewer", ttl=3600)
    conn = rtnb.connect(
        [g.url for g in gws],
        token=token,
        transport="websocket",
        backoff=Backoff(base=0.2, cap=1.0),
        heartbeat_interval=1.0,
        shared=False,
    )
    topic = conn.subscribe("fo")
    times: list[float] = []
    try:
        _wait(lambda: topic.status == "live", 20)
        for k in range(KILLS):
            url = conn._session.url
            victim = next(g for g in gws if g.url == url)
            t0 = time.monotonic()
            victim.kill()
            _wait(lambda: topic.status != "live", 20)
            pub.publish("fo", "x.set", {"i": k + 1}, tenant="bench", entity_id="e")
            _wait(
                lambda k=k: topic.status == "live" and topic.server_entities == {"e": {"i": k + 1}},
                20,
            )
            times.append(time.monotonic() - t0)
            gws[gws.index(victim)] = Gateway(redis_url, secret_file, victim.port)
            print(f"  kill {k + 1}/{KILLS}: live again after {times[-1]:.2f} s", file=sys.stderr)
    finally:
        conn.close()
        pub.stop()
        for g in gws:
            g.stop()
    return times


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.005)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="rtnb-scale-"))
    secret_file = tmp / "secret.key"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o600)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_client_process, args=(child,), daemon=True)
    proc.start()
    redis_server = Redis(tmp)
    rows: dict[str, dict[str, float]] = {}
    try:
        common: dict[str, Any] = {"port": 0, "heartbeat_interval": 60.0, "admission_rate": None}
        common["rate_limit"] = None
        with serve(**common) as srv:
            srv.declare("s")
            rows["memory / 1 process"] = _measure(parent, srv, [srv.ws_url], "s")
        print("  memory: done", file=sys.stderr, flush=True)
        key = bytes.fromhex(SECRET)
        with serve(store=redis_server.url, secret=key, **common) as srv:
            srv.declare("r1")
            rows["redis / 1 gateway"] = _measure(parent, srv, [srv.ws_url], "r1")
            token = srv.issue_token(tenant="bench", user="b", ttl=3600)
            # The split of that lag (instrumented: a run of its own).
            acks: list[float] = []
            with _Split() as split:
                lag = _lag(parent, srv, [srv.ws_url], token, "r1", LAG_SUBSCRIBERS, acks)
            split.times["ack"] = acks
            # The same lag with appendfsync everysec (a Redis crash may lose ~1 s acknowledged).
            admin = redis.Redis(port=redis_server.port)
            admin.config_set("appendfsync", "everysec")
            _, everysec = _lag(parent, srv, [srv.ws_url], token, "r1", LAG_SUBSCRIBERS)
            admin.config_set("appendfsync", "always")
            admin.close()
            print("  redis 1: done", file=sys.stderr, flush=True)
            other = Gateway(redis_server.url, secret_file)
            try:
                srv.declare("r2")
                rows["redis / 2 gateways"] = _measure(parent, srv, [srv.ws_url, other.ws_url], "r2")
            finally:
                other.stop()
        print("  redis 2: done", file=sys.stderr, flush=True)
        kills = _failover(redis_server.url, secret_file)
    finally:
        with contextlib.suppress(Exception):
            parent.send(None)
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"scale-out: {SUBSCRIBERS} WebSocket subscribers; Redis with AOF appendfsync always; "
        f"throughput over {EVENTS} events, lag at {RATE} events/s for {LAG_SECONDS:.0f} s"
    )
    print(
        f"{'configuration':<22} {'delivered ev/s':>15} {'lag p50/p99 ms, 200 subs':>26} "
        f"{'lag p50/p99 ms, ' + str(LAG_SUBSCRIBERS) + ' subs':>26}"
    )
    for name, r in rows.items():
        many = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"
        few = f"{r['p50_ms_few']:.2f} / {r['p99_ms_few']:.2f}"
        print(f"{name:<22} {r['throughput']:>15,.0f} {many:>26} {few:>26}")
    mem, one, two = (rows[k] for k in rows)
    ratio = one["throughput"] / mem["throughput"]
    ok1 = ratio >= 0.5
    ok2 = one["p99_ms_few"] <= 10.0
    mem_p99 = mem["p99_ms_few"]
    print(
        f"redis 1 gateway / memory throughput: {ratio:.2f} (bar >= 0.50: {'ok' if ok1 else 'MISS'})"
    )
    print(
        f"redis 1 gateway lag p99 at {RATE} events/s, {LAG_SUBSCRIBERS} subscribers: "
        f"{one['p99_ms_few']:.2f} ms with appendfsync always (bar <= 10 ms: "
        f"{'ok' if ok2 else 'MISS'}; {one['p99_ms_few'] / mem_p99:.1f}x memory's {mem_p99:.2f} ms), "
        f"{everysec:.2f} ms with appendfsync everysec (bar: {'ok' if everysec <= 10 else 'MISS'}; "
        f"{everysec / mem_p99:.1f}x memory); with {SUBSCRIBERS} subscribers {RATE} events/s is "
        f"{SUBSCRIBERS * RATE:,} deliveries/s, above what this machine delivers, so that lag "
        "measures the queue"
    )
    t = split.times
    print(
        f"split (redis / 1 gateway, appendfsync always, {LAG_SUBSCRIBERS} subscribers, "
        f"instrumented run: lag p50/p99 {lag[0]:.2f} / {lag[1]:.2f} ms), p50/p99 ms: publish "
        f"acknowledged {_pct(t['ack'], 0.5):.2f} / {_pct(t['ack'], 0.99):.2f}; APPEND round "
        f"trip (Lua + AOF fsync + loopback) {_pct(t['append'], 0.5):.2f} / "
        f"{_pct(t['append'], 0.99):.2f}; ingest + fan-out per event "
        f"{_pct(t['fanout'], 0.5):.3f} / {_pct(t['fanout'], 0.99):.3f}; Pub/Sub delivery after "
        f"the reply {_pct(t['pubsub'], 0.5):.2f} / {_pct(t['pubsub'], 0.99):.2f}"
    )
    print(
        f"redis 2 gateways / 1 gateway throughput: {two['throughput'] / one['throughput']:.2f} "
        "(fan-out is CPU-bound in one Python process per gateway; a second gateway process "
        "can use the second core, but on 2 cores shared with redis-server, the subscriber "
        "process, the publisher and other work there is at most one core to gain)"
    )
    bar = 1.0 + 2.0
    kills.sort()
    p99 = kills[min(len(kills) - 1, int(len(kills) * 0.99))]
    print(
        f"failover over {len(kills)} kills: live again p50 {statistics.median(kills):.2f} s, "
        f"p99 {p99:.2f} s, max {kills[-1]:.2f} s (bar: backoff cap 1.0 s + 2 s = {bar:.1f} s: "
        f"{'ok' if p99 <= bar else 'MISS'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
