"""Instructions per frame of ``Pipeline.feed`` over ``bench pipeline``'s stream, for callgrind.

Deterministic where wall-clock and CPU time are not (a loaded box moves neither the count
nor the split). Only the feed loop is counted: it runs inside ``deque(starmap(...))``, and
callgrind collects only inside CPython's ``consume_iterator``::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --collect-atstart=no \\
        --toggle-collect=consume_iterator --callgrind-out-file=cg.out \\
        .venv/bin/python -m bench._callgrind 20000
    callgrind_annotate --inclusive=yes cg.out | less

Divide the "Collected" total by the frame count. ``NOLOG=1`` feeds a pipeline without a
log (the difference is the log's share). Frames: ``N`` after a warm-up of 3,000.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections import deque
from itertools import repeat, starmap

from rtnb.core.pipeline import Pipeline
from rtnb.telemetry import EnvelopeLog

from ._frames import make_events, wire

WARM = 3_000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    frames = wire(make_events(n + WARM + 2_000))[: n + WARM]
    log = None if os.environ.get("NOLOG") else EnvelopeLog(envelope_capacity=len(frames) * 2)
    p = Pipeline(log)
    for topic in ("incidents", "fleet", "prices"):
        p.add_topic(topic, "sequence")
    now = time.time()
    feed = p.feed
    for f in frames[:WARM]:
        feed(f, now)
    gc.collect()
    # starmap, not map: Codes.encode maps too, and map_next would mix the two in the profile
    deque(starmap(feed, zip(frames[WARM:], repeat(now))), maxlen=0)  # noqa: RUF058
    print(f"{n:,} frames counted", file=sys.stderr)


if __name__ == "__main__":
    main()
