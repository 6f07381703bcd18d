"""The server's ``publish_many`` path in one thread, without sockets: CPU and instructions per event.

What the server process of ``bench server_publish`` does per batch, minus the thread hop
and the socket: ``bulk.prepare`` (the publisher's side), ``bulk.publish_batch`` and one
commit round on the loop (stage, commit, fan-out to one subscribed session), the session's
backlog taken as ``batch`` frames (the writer's side, ``Session.take_text``) and the
returned ``Event``s built (``events_of``). Memory store, retention 100,000, one topic of
``ENTITIES`` entities, batches of 1,000 events ``("row.updated", entity, {"n": k})`` (the
load of ``bench/_table_server.py``); ``KEYED=1`` gives each event a fresh ``publishId``.

Deterministic under callgrind (a loaded box moves neither the count nor the split); only
the batches after the warm-up are counted, inside ``deque(starmap(...))``::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=consume_iterator --callgrind-out-file=cg.out \\
        .venv/bin/python -m bench._publish_loop 20
    callgrind_annotate --inclusive=yes cg.out | less

Divide the "Collected" total by ``batches × 1,000``. Without valgrind it prints the CPU µs
per event (``thread_time``; best of three passes). ``PYTHONPATH=<tree>`` for A/B.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import os
import random
import sys
import time
from collections import deque
from typing import Any

from rtnb.server import bulk
from rtnb.server.chaos import Chaos
from rtnb.server.config import ServerConfig
from rtnb.server.hub import Hub
from rtnb.server.session import Session
from rtnb.server.staged import events_of
from rtnb.server.storage import MemoryStorage
from rtnb.server.tokens import ReplayTokens

TENANT, TOPIC = "bench", "t100k"
ENTITIES = 10_000
BATCH = 1_000
WARM = 20


class Loop:
    def __init__(self, keyed: bool) -> None:
        config = ServerConfig(retention=100_000)
        tokens = ReplayTokens(hmac.digest(b"k" * 32, b"rtnb replay tokens v1", hashlib.sha256))
        self.hub = Hub(config, MemoryStorage(), tokens, Chaos(seed=1), {})
        self.session = Session("ws", config.send_queue_limit, self.hub.chaos)
        self.hub.watch(self.session, self.hub.log(TENANT, TOPIC))
        self.max_messages = config.batch_max_messages
        self.max_bytes = config.batch_max_bytes
        self.keyed = keyed
        self.rng = random.Random(22)
        self.ids = [f"e{i:05d}" for i in range(ENTITIES)]
        self.k = 0
        self.frames = 0

    def events(self) -> list[Any]:
        picks = self.rng.choices(self.ids, k=BATCH)
        first = self.k + 1
        self.k += BATCH
        if self.keyed:
            return [("row.updated", eid, {"n": n}, f"p{n}") for n, eid in enumerate(picks, first)]
        return [("row.updated", eid, {"n": n}) for n, eid in enumerate(picks, first)]

    def batch(self, events: list[Any]) -> None:
        prepared, keys = bulk.prepare(TOPIC, TENANT, events)
        out = bulk.publish_batch(self.hub, TENANT, TOPIC, prepared, keys)
        coro = self.hub._commit_round()  # memory store: never suspends
        with contextlib.suppress(StopIteration):
            coro.send(None)
        session = self.session
        while session.queue:
            text = session.take_text(self.max_messages, self.max_bytes)
            assert text is not None
            self.frames += 1
            text.encode()  # what the socket write does first
        events_of(out)


async def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    keyed = bool(os.environ.get("KEYED"))
    loop = Loop(keyed)
    for _ in range(WARM):
        loop.batch(loop.events())
    best = float("inf")
    passes = 1 if os.environ.get("ONCE") else 3
    for _ in range(passes):
        work = [loop.events() for _ in range(batches)]
        gc.collect()
        t0 = time.thread_time()
        deque(map(loop.batch, work), maxlen=0)
        best = min(best, time.thread_time() - t0)
    per = best / (batches * BATCH) * 1e6
    print(f"{'keyed' if keyed else 'unkeyed'}: {per:.3f} µs/event (best of {passes})")


if __name__ == "__main__":
    asyncio.run(main())
