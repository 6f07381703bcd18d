"""Seeking in a 1,000,000-envelope recording: checkpoints against rolling from the start.

Builds a recording of 1,000,000 event frames (three topics, 1,000 entities
each, 5% duplicates, 5% adjacent swaps; ``bench._frames``), then, on one
replay, plays it once to the end (that pass leaves a checkpoint every
``CHECKPOINT_ROWS`` rows) and seeks to 20 random instants, backwards and
forwards. The baseline, in the same run: the same seeks with checkpoints off
(``checkpoint_rows = 0``: every backward seek replays from the start), on
fewer seeks because each takes seconds.

Bar (issue 12): any seek ≤ 1 s. The worst and the median seek are printed as
ratios to the bar and to the baseline. The checkpoints' memory (every object
they alone keep alive, walked with ``gc.get_referents``; what the live state,
the log and the recording hold is not counted) is printed against its bar, the
recording's own size in memory: seeking may at most double what a replay holds.
(The first design, 64 full copies, held 364 MB here: 0.94× the recording.)
Run: ``python -m bench.replay_seek`` (``N=200000`` for a quick look).
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rtnb.client.replay import replay
from rtnb.protocol import encode
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.recorded import Recording, frames_table

from ._frames import TOPICS, make_events, wire

N = int(os.environ.get("N", "1000000"))
T0 = 1_790_000_000.0
RATE = 1000.0  # frames per recorded second
#: Bar (issue 12): a seek anywhere takes at most this long.
SEEK_BAR = 1.0
#: Bar for the checkpoints' memory, as a share of the recording's own size: 1.
MEMORY_BAR = 1.0


def synthetic_recording(n: int, path: Path, *, seed: int = 1) -> Path:
    """A recording file of ``n`` events (plus duplicates) over :data:`TOPICS`, starting
    with the topic set and an empty snapshot of each, read back by ``read_parquet``."""
    topics = {t: {"ordering": "sequence", "gap_timeout": 1.0} for t in TOPICS}
    rows: list[tuple[float, str, str, int, bytes, bool]] = [
        (T0, "topics", "websocket", 1, encode(topics), True)
    ]
    for t in TOPICS:
        snap = {"op": "snapshot", "topic": t, "entities": [], "token": "x" * 12, "sequence": 0}
        rows.append((T0, "frame", "websocket", 1, encode(snap), True))
    for k, frame in enumerate(wire(make_events(n, seed=seed), seed=seed + 1)):
        rows.append((T0 + (k + 1) / RATE, "frame", "websocket", 1, frame, True))
    recording = Recording(frames_table(rows), {"payloads": True, "started_at": T0})
    log = EnvelopeLog()
    log.set_frame_source(lambda: recording)
    log.to_parquet(path)
    return path


def _seek(rep: Any, t: float) -> float:
    start = time.perf_counter()
    rep.seek(t)
    return time.perf_counter() - start


def _reachable(roots: Iterable[object], skip: set[int]) -> dict[int, int]:
    """``{id: size}`` of every object reachable from ``roots`` (not through ``skip``)."""
    sizes: dict[int, int] = {}
    stack = [r for r in roots if id(r) not in skip]
    while stack:
        obj = stack.pop()
        if id(obj) in sizes or id(obj) in skip:
            continue
        sizes[id(obj)] = sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return sizes


def checkpoint_bytes(rep: Any) -> int:
    """Bytes only the checkpoints keep alive: reachable from them, not from the live
    pipeline, topics, log or recording (nor through the replay and its player)."""
    player = rep._player
    opaque = {id(player.log), id(player.timeline), id(player.pipeline.decoder)}
    opaque |= {id(x) for x in (rep, vars(rep), player, vars(player), player.checkpoints)}
    live = _reachable([player.pipeline, player.topic_states], opaque)
    held = _reachable(player.checkpoints, opaque | live.keys())
    return sum(held.values())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t_build = time.perf_counter()
        path = synthetic_recording(N, Path(tmp) / "rec.parquet")
        log = EnvelopeLog.read_parquet(path)
        t_build = time.perf_counter() - t_build
    recording = log.recording
    assert recording is not None
    rng = random.Random(3)
    rep = replay(log, speed=None, paused=True)
    start, end = rep.start.timestamp(), rep.end.timestamp()
    first = _seek(rep, end)  # one pass: leaves the checkpoints
    targets = [rng.uniform(start, end) for _ in range(20)]
    times = [_seek(rep, t) for t in targets]
    player = rep._player
    n_cp, every = len(player.checkpoints), player.checkpoint_rows
    # the worst case by construction: just before a checkpoint, from far away
    worst_case = []
    for k in (n_cp // 4, 3 * n_cp // 4, n_cp // 2):
        row = min(player.checkpoints[k].i + every - 1, len(player) - 1)
        worst_case.append(_seek(rep, float(player.timeline.times[row])))
    memory = checkpoint_bytes(rep)
    rep.close()

    base = replay(log, speed=None, paused=True)
    base._player.checkpoint_rows = 0
    _seek(base, end)
    base_times = [_seek(base, t) for t in targets[:3]]
    base.close()
    worst, p50 = max(times), statistics.median(times)
    worst_built = max(worst_case)
    base_p50 = statistics.median(base_times)
    rec_bytes = recording.frames.nbytes
    print(
        f"replay seek: {N:,} events ({len(recording):,} frames, {rec_bytes / 1e6:.0f} MB), "
        f"built in {t_build:.1f} s"
    )
    print(
        f"first seek to the end (plays every row, leaves {n_cp} checkpoints, "
        f"one every {every:,} rows): {first:.2f} s"
    )
    print(
        f"20 random seeks: worst {worst:.3f} s ({worst / SEEK_BAR:.2f}× the {SEEK_BAR:.0f} s bar), "
        f"p50 {p50:.3f} s ({p50 / SEEK_BAR:.2f}× the bar)"
    )
    print(
        f"3 seeks to just before a checkpoint (a full roll forward): worst {worst_built:.3f} s "
        f"({worst_built / SEEK_BAR:.2f}× the bar)"
    )
    print(
        f"checkpoint memory: {memory / 1e6:.1f} MB ({memory / max(n_cp, 1) / 1e6:.2f} MB each; "
        f"{memory / rec_bytes / MEMORY_BAR:.2f}× the bar, the recording's {rec_bytes / 1e6:.0f} MB)"
    )
    print(
        f"baseline without checkpoints (3 seeks): p50 {base_p50:.2f} s; "
        f"checkpoints are {base_p50 / p50:.0f}× faster at p50"
    )


if __name__ == "__main__":
    main()
