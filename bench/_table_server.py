"""The reference server and its publisher, in a process of their own, for bench/table_100k.py.

Protocol: one JSON line per message. On start it serves (memory store), fills one
topic with ``entities`` rows and prints ``{"url", "token"}``. Each line read on
stdin is a command:

* ``{"cmd": "run", "rate", "seconds", "batch", "marker", "expected"}``: publish
  ``publish_many`` batches of ``batch`` events over the entities, paced to ``rate``
  events/s for ``seconds`` (as fast as they go if behind); then one last event sets
  the first entity's ``label`` to ``marker``. Writes each entity's final ``n`` to the
  file ``expected`` and answers ``{"published", "seconds", "last_publish", ...}``
  (``last_publish``: wall time when the last ``publish_many`` returned).
* ``{"cmd": "stop"}``: stop serving and exit.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
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


def main() -> None:
    entities = int(sys.argv[1])
    with rtnb.serve(port=0, retention=100_000) as srv:
        fill(srv, entities)
        token = srv.issue_token(tenant=TENANT, user="bench", role="viewer")
        print(json.dumps({"url": srv.url, "token": token}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "stop":
                break
            if cmd["cmd"] == "run":
                print(json.dumps(run(srv, entities, cmd)), flush=True)


if __name__ == "__main__":
    main()
