"""The reference server and its publisher, in a process of their own, for
bench/table_100k.py and the throughput cases of bench/end_to_end.py.

``python -m bench._table_server ENTITIES [RETENTION]``. Protocol: one JSON line per
message. On start it serves (memory store, ``RETENTION`` events kept per topic,
100,000 by default), fills one topic with ``entities`` rows (none if 0) and prints
``{"url", "token"}``. Each line read on stdin is a command:

* ``{"cmd": "run", "rate", "seconds", "batch", "marker", "expected"}``: publish
  ``publish_many`` batches of ``batch`` events over the entities, paced to ``rate``
  events/s for ``seconds`` (as fast as they go if behind); then one last event sets
  the first entity's ``label`` to ``marker``. Writes each entity's final ``n`` to the
  file ``expected`` and answers ``{"published", "seconds", "last_publish", ...}``
  (``last_publish``: wall time when the last ``publish_many`` returned).
* ``{"cmd": "publish", "topic", "n", "batch", "entities", "rate"}`` (end_to_end):
  ``n`` events in ``publish_many`` calls of ``batch`` over ``entities`` entities, as
  fast as they go (``rate`` null) or paced to ``rate`` events/s; answers
  ``{"published": events/s reached, "publisher_us": the publishing thread's CPU µs
  per event}``.
* ``{"cmd": "declare", "topic"}``, ``{"cmd": "token", "user"}`` (a viewer token of
  tenant ``bench``): answer ``{"ok": true}`` and ``{"token"}``.
* ``{"cmd": "cpu"}``: ``{"loop": CPU seconds of the server's loop thread (read on
  it), "process": of the whole process}``.
* ``{"cmd": "stop"}``: stop serving and exit.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import rtnb

TENANT = "bench"
TOPIC = "t100k"


def entity(i: int) -> str:
    return f"e{i:05d}"


def fill(srv: Any, n: int) -> None:
    for lo in range(0, n, 1_000):
        srv.publish_many(
            TOPIC,
            [("row.updated", entity(i), {"n": 0, "label": f"row {i}"}) for i in range(lo, min(n, lo + 1_000))],
            tenant=TENANT,
        )  # fmt: skip


class GCTime:
    """Seconds the garbage collector ran in this process, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._start = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._start
            self.runs[info["generation"]] += 1


GC = GCTime()


def run(srv: Any, entities: int, cmd: dict[str, Any]) -> dict[str, Any]:
    rate, seconds, batch = float(cmd["rate"]), float(cmd["seconds"]), int(cmd["batch"])
    rng = random.Random(22)
    ids = [entity(i) for i in range(entities)]
    final: dict[str, int] = {}
    period = batch / rate
    total = int(rate * seconds)
    k = 0
    call_ms: list[float] = []
    call_cpu = 0.0  # this thread's CPU inside publish_many
    cpu0, srv0 = time.thread_time(), srv._call(lambda rt: time.thread_time())
    proc0 = time.process_time()
    gc0, runs0 = list(GC.seconds), list(GC.runs)
    start = time.perf_counter()
    due = start
    while k < total and time.perf_counter() - start < seconds:
        picks = rng.choices(ids, k=min(batch, total - k))
        events = [("row.updated", eid, {"n": n}) for n, eid in enumerate(picks, k + 1)]
        final.update(zip(picks, range(k + 1, k + len(picks) + 1), strict=True))
        k += len(picks)
        t0, c0 = time.perf_counter(), time.thread_time()
        srv.publish_many(TOPIC, events, tenant=TENANT)
        call_cpu += time.thread_time() - c0
        call_ms.append((time.perf_counter() - t0) * 1000)
        due += period
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    k += 1  # the last event of the run, alone: the marker the browser waits for
    srv.publish_many(
        TOPIC, [("row.updated", ids[0], {"n": k, "label": cmd["marker"]})], tenant=TENANT
    )
    final[ids[0]] = k
    last_publish = time.time()
    elapsed = time.perf_counter() - start
    with open(cmd["expected"], "w") as f:
        json.dump(final, f)
    return {
        "published": k,
        "seconds": elapsed,
        "last_publish": last_publish,
        "calls": len(call_ms),
        "call_ms_median": statistics.median(call_ms),
        "process_cpu": (time.process_time() - proc0) / elapsed,
        "publisher_us": (time.thread_time() - cpu0) / max(1, k) * 1e6,
        "publish_many_us": call_cpu / max(1, k) * 1e6,
        "gc_us": [(b - a) / max(1, k) * 1e6 for a, b in zip(gc0, GC.seconds, strict=True)],
        "gc_runs": [b - a for a, b in zip(runs0, GC.runs, strict=True)],
        "server_us": (srv._call(lambda rt: time.thread_time()) - srv0) / max(1, k) * 1e6,
    }


def publish(srv: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    """end_to_end's load: ``n`` events in ``batch``-event calls over ``entities``."""
    topic, n, batch = cmd["topic"], int(cmd["n"]), int(cmd["batch"])
    entities, rate = int(cmd["entities"]), cmd.get("rate")
    cpu0 = time.thread_time()
    start = time.perf_counter()
    period = None if rate is None else batch / float(rate)
    due = start
    for lo in range(0, n, batch):
        srv.publish_many(
            topic,
            [
                ("tick.updated", f"e-{k % entities}", {"v": k, "note": "x" * 40})
                for k in range(lo, min(lo + batch, n))
            ],
            tenant=TENANT,
        )
        if period is not None:
            due += period
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    return {
        "published": n / (time.perf_counter() - start),
        "publisher_us": (time.thread_time() - cpu0) / n * 1e6,
    }


def command(srv: Any, entities: int, cmd: dict[str, Any]) -> dict[str, Any]:
    kind = cmd["cmd"]
    if kind == "run":
        return run(srv, entities, cmd)
    if kind == "publish":
        return publish(srv, cmd)
    if kind == "declare":
        srv.declare(cmd["topic"])
        return {"ok": True}
    if kind == "token":
        return {"token": srv.issue_token(tenant=TENANT, user=cmd["user"], role="viewer")}
    if kind == "stats":  # the server's counters (slow consumers cut, topics fallen behind)
        return dict(srv.stats())
    if kind == "cpu":
        return {"loop": srv._call(lambda rt: time.thread_time()), "process": time.process_time()}
    raise ValueError(f"unknown command {kind!r}")


class Server:
    """This module in a process of its own, from the bench's side (``send`` a command,
    ``read`` its answer)."""

    def __init__(self, entities: int, retention: int = 100_000) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._table_server", str(entities), str(retention)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bench server exited ({self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send ``cmd`` and wait for its answer."""
        self.send(cmd)
        return self.read()

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "stop"})
                self.proc.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    entities = int(sys.argv[1])
    retention = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    with rtnb.serve(port=0, retention=retention) as srv:
        fill(srv, entities)
        token = srv.issue_token(tenant=TENANT, user="bench", role="viewer")
        print(json.dumps({"url": srv.url, "token": token}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "stop":
                break
            print(json.dumps(command(srv, entities, cmd)), flush=True)


if __name__ == "__main__":
    main()
