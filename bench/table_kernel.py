"""The kernel's side of ``table_100k`` without a browser: client CPU per event with
and without a ``StreamTable`` (issue 22, item 2 in the notebook).

``bench/table_100k.py`` measures the kernel's client runtime thread in JupyterLab +
Chromium; this case runs the same kernel-side objects headless, so the cost a
table adds to the client is measured alone, in seconds rather than minutes:

* the server and its publisher in a process of their own (``bench/_table_server.py``):
  one topic of 10,000 entities, ``publish_many`` batches of 1,000 paced to
  ``--rate`` (100k events/s) for ``--seconds``;
* here, ``rtnb.connect`` + ``subscribe`` (``client``), and the same plus one
  ``StreamTable`` displayed (its feed active, ``fps`` 10) whose messages are
  serialised as a kernel's comm does (``table``: ``jupyter_client.Session``'s JSON
  packing and signing, the buffers copied, no socket).

Printed: the runtime thread's CPU time per applied event (``time.thread_time()``
read on that thread, as ``table_100k``'s sampler does) for each mode, and of it the
garbage collector's (``gc.callbacks``, on that thread), medians of ``--rounds``
alternated rounds (range), and what the table added (table - client, µs/event).
Issue 22: the table's rows as lists (and ``(id, view)`` pairs) were promoted to the
collector's oldest generation every tick, a full collection about every other tick:
~2 of the ~4 µs/event the table added. ``python -m bench.table_kernel [--rate R] [--seconds S] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import rtnb
from bench._table_server import TOPIC, Server
from rtnb.client.runtime import get_runtime

ENTITIES = 10_000
RATE = 100_000
SECONDS = 4.0
BATCH = 1_000
ROUNDS = 3


class GCTime:
    """Seconds the garbage collector ran on each thread (gc.callbacks), by thread id."""

    def __init__(self) -> None:
        self.seconds: dict[int, float] = {}
        self._start: dict[int, float] = {}
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        me = threading.get_ident()
        if phase == "start":
            self._start[me] = time.thread_time()
        else:
            self.seconds[me] = self.seconds.get(me, 0.0) + time.thread_time() - self._start[me]


GC = GCTime()


async def _thread_time() -> tuple[float, float]:
    return time.thread_time(), GC.seconds.get(threading.get_ident(), 0.0)


def runtime_cpu() -> tuple[float, float]:
    """CPU seconds of rtnb's runtime thread, and of them the garbage collector's, read on it."""
    coro: Coroutine[Any, Any, tuple[float, float]] = _thread_time()
    return get_runtime().run(coro)


def kernel_send() -> Callable[[dict[str, Any], list[bytes]], None]:
    """A widget ``send`` costing what a kernel's comm send costs on the sending thread:
    the message built and serialised by ``jupyter_client.Session`` (JSON, HMAC), the
    buffers copied; nothing goes out."""
    from jupyter_client.session import Session

    session = Session(key=b"bench-key")

    def send(content: dict[str, Any], buffers: list[bytes]) -> None:
        msg = session.msg(
            "comm_msg", {"comm_id": "bench", "data": {"method": "custom", "content": content}}
        )
        parts = session.serialize(msg)
        parts.extend(bytes(b) for b in buffers)

    return send


def one(server: Server, table: bool, rate: float, seconds: float) -> tuple[float, float, int]:
    """One round: ``(µs of runtime CPU per applied event, of them the garbage
    collector's, messages the table sent)``."""
    conn = rtnb.connect(server.hello["url"], token=server.hello["token"], shared=False)
    widget = None
    mode = "table" if table else "client"
    try:
        conn.wait_for("subscribed", 15)
        topic = conn.subscribe(TOPIC)
        deadline = time.monotonic() + 60
        while topic.freshness.status != "live" or len(topic.topic_state.store.entities) < ENTITIES:
            if time.monotonic() > deadline:
                raise RuntimeError("the topic did not become live")
            time.sleep(0.01)
        if table:
            from rtnb.widgets import StreamTable

            widget = StreamTable(topic, title="t100k", height=400)
            widget.send = kernel_send()  # what ipykernel's comm does, on the runtime thread
            feed = widget._feed
            assert feed is not None
            feed.activate()
            deadline = time.monotonic() + 30
            while feed.sent == 0:  # the snapshot went out
                if time.monotonic() > deadline:
                    raise RuntimeError("the table sent no snapshot")
                time.sleep(0.01)
        ts = topic.topic_state
        base, lost0 = ts.applied, ts.unrecoverable
        with tempfile.NamedTemporaryFile(suffix=".json") as expected:
            cpu0 = runtime_cpu()
            sent0 = 0 if widget is None else widget.messages_sent
            server.send(
                {"cmd": "run", "rate": rate, "seconds": seconds, "batch": BATCH,
                 "marker": "end", "expected": expected.name}
            )  # fmt: skip
            run = server.read()
            deadline = time.monotonic() + 60
            # applied, or logged lost (a client further than the retention behind resyncs)
            while (
                ts.applied - base + ts.unrecoverable - lost0 < run["published"]
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
            if widget is not None:  # the last rows leave within a tick
                time.sleep(0.25)
            cpu1 = runtime_cpu()
            sent = 0 if widget is None else widget.messages_sent - sent0
        applied = ts.applied - base
        if applied != run["published"]:
            print(
                f"  ({mode}: applied {applied:,} of {run['published']:,} events; the rest "
                "logged lost: the client fell more than the retention behind)"
            )
        cpu, gct = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        return cpu / applied * 1e6, gct / applied * 1e6, sent
    finally:
        if widget is not None:
            widget.close()
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_kernel")
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--only", choices=("client", "table"), default=None)
    args = parser.parse_args()
    modes = [args.only] if args.only else ["client", "table"]
    results: dict[str, list[float]] = {m: [] for m in modes}
    gcs: dict[str, list[float]] = {m: [] for m in modes}
    msgs: list[int] = []
    server = Server(ENTITIES)
    try:
        for _ in range(args.rounds):
            for mode in modes:
                us, gc_us, sent = one(server, mode == "table", args.rate, args.seconds)
                results[mode].append(us)
                gcs[mode].append(gc_us)
                if mode == "table":
                    msgs.append(sent)
    finally:
        server.stop()
    print(
        f"client runtime thread CPU per applied event, {args.rate:,.0f} events/s offered for "
        f"{args.seconds:g} s (publish_many of {BATCH:,}, {ENTITIES:,} entities, server in its "
        f"own process); medians of {args.rounds} alternated rounds (range)"
    )
    for mode, values in results.items():
        label = "client alone" if mode == "client" else "client + StreamTable (fps 10)"
        print(
            f"{label:<32}{statistics.median(values):>7.2f} µs/event "
            f"({min(values):.2f}–{max(values):.2f}); garbage collector "
            f"{statistics.median(gcs[mode]):.2f} µs/event of it"
        )
    if len(results) == 2:
        added = [t - c for c, t in zip(results["client"], results["table"], strict=True)]
        print(
            f"{'the table added':<32}{statistics.median(added):>7.2f} µs/event "
            f"({min(added):.2f}–{max(added):.2f}); table messages per round {msgs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
