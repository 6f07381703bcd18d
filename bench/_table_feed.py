"""The client's apply path with and without a ``StreamTable``'s feed, no network (issue 22).

``table_100k``'s kernel work, made deterministic: ``batch`` frames of 1,000 events on one
topic of 10,000 entities (``{"n": k}`` on random entities, as ``bench/_table_server.py``
publishes) go through ``Pipeline.feed`` with a real ``EnvelopeLog``; with ``table`` a
:class:`~rtnb.widgets.rows.TableFeed` on the topic's row cursor sends a diff every 10,000
events (one 10 fps tick at 100k events/s) to a sink that keeps nothing. Printed: thread
CPU per event, best of ``ROUNDS``, and the garbage collector's share of it
(``gc.callbacks``)::

    PYTHONPATH=<tree> python -m bench._table_feed          # client, then client + table

For instruction counts (noise-free; only the measured loop, which runs inside
``deque(starmap(...))``, is collected)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=consume_iterator --callgrind-out-file=cg.out \\
        .venv/bin/python -m bench._table_feed table 1
    callgrind_annotate --inclusive=yes cg.out | less

(``client 1`` for the pipeline alone; then the rounds, and optionally the events, 200,000
by default: ``table 1 50000`` under valgrind.)
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from itertools import starmap
from typing import Any

from rtnb.client.state import ConnectionState
from rtnb.client.topic_view import RowCursor
from rtnb.core.pipeline import Pipeline
from rtnb.core.status import Status
from rtnb.protocol import Event, encode
from rtnb.telemetry import EnvelopeLog
from rtnb.widgets.budget import MessageBudget
from rtnb.widgets.rows import TableFeed

ENTITIES = 10_000
EVENTS = 200_000
BATCH = 1_000
#: events between two ticks of the table: one 10 fps tick at 100k events/s
TICK = 10_000
ROUNDS = 5
TOPIC = "t100k"


def frames(n: int = EVENTS, seed: int = 22) -> list[str]:
    """``n`` events in ``batch`` frames of :data:`BATCH`, sequences from 1."""
    rng = random.Random(seed)
    t0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    out: list[str] = []
    for lo in range(0, n, BATCH):
        texts = []
        for seq in range(lo + 1, min(n, lo + BATCH) + 1):
            event = Event(
                id=f"evt-{seq:012d}", type="row.updated", topic=TOPIC, sequence=seq,
                entity_id=f"e{rng.randrange(ENTITIES):05d}",
                occurred_at=t0 + timedelta(microseconds=10 * seq),
                replay_token=f"tok.{TOPIC}.{seq}.{'a' * 22}", payload={"n": seq},
            )  # fmt: skip
            texts.append(encode(event).decode())
        out.append('{"op":"batch","messages":[' + ",".join(texts) + "]}")
    return out


class _NoLoop:
    def call_soon_threadsafe(self, fn: Any) -> None: ...

    def call_later(self, delay: float, fn: Any) -> None: ...


class _GC:
    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._start


def one(data: list[str], table: bool) -> tuple[float, float, int]:
    """One round: ``(CPU s, of it the collector's, messages sent)``."""
    p = Pipeline(EnvelopeLog())
    ts = p.add_topic(TOPIC, "sequence")
    ts.store.replace([(f"e{i:05d}", {"n": 0, "label": f"row {i}"}, 0) for i in range(ENTITIES)])
    ts.orderer.next_seq = 1  # type: ignore[attr-defined]
    ts.status = "live"
    sent: list[int] = []
    clock = [0.0]  # the feeds' clock: the ticks' own times
    feed = None
    if table:
        state = ConnectionState(
            Status.SUBSCRIBED, previous=None, reason="bench", attempt=0, next_retry_at=None,
            transport="websocket", since=0.0,
        )  # fmt: skip
        feed = TableFeed(
            _NoLoop(), lambda content, buffers: sent.append(len(buffers)),
            rows=RowCursor(ts), connection_state=lambda: state,
            budget=MessageBudget(rate=1e9, burst=1e9), clock=lambda: clock[0],
        )  # fmt: skip
        feed.activate()
        feed.flush(0.0)  # the snapshot, not measured
    per_tick = TICK // BATCH
    ticks = [data[k : k + per_tick] for k in range(0, len(data), per_tick)]
    feed_frame = p.feed
    now = time.time()

    def step(tick: list[str], at: float) -> None:
        for f in tick:
            feed_frame(f, now)
        if feed is not None:
            clock[0] = at
            feed.flush(at)

    gc.collect()
    cpu0, gc0 = time.thread_time(), GC.seconds
    deque(starmap(step, ((t, 1.0 + 0.2 * k) for k, t in enumerate(ticks))), maxlen=0)
    cpu, gcs = time.thread_time() - cpu0, GC.seconds - gc0
    assert ts.applied == sum(f.count('"op":"event"') for f in data), ts.applied
    return cpu, gcs, len(sent)


GC = _GC()


def main(argv: list[str]) -> None:
    modes = [argv[0]] if argv else ["client", "table"]
    rounds = int(argv[1]) if len(argv) > 1 else ROUNDS
    n = int(argv[2]) if len(argv) > 2 else EVENTS
    data = frames(n)
    for mode in modes:
        runs = [one(data, mode == "table") for _ in range(rounds)]
        cpu, gcs, msgs = min(runs)
        print(
            f"{mode:<7} {cpu / n * 1e6:.2f} µs/event (best of {rounds}; collector "
            f"{gcs / n * 1e6:.2f}); {msgs} table messages"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
