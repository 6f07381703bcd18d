"""Seeking in a 1,000,000-envelope recording: checkpoints against rolling from the start.

Builds a recording of 1,000,000 event frames (three topics, 1,000 entities
each, 5% duplicates, 5% adjacent swaps; ``bench._frames``), then, on one
replay, plays it once to the end (that pass leaves a checkpoint every
``CHECKPOINT_ROWS`` rows) and seeks to 20 random instants, backwards and
forwards. The baseline, in the same run: the same seeks with checkpoints off
(``checkpoint_rows = 0``: every backward seek replays from the start), on
fewer seeks because each takes seconds.

Bar (issue 12): any seek ≤ 1 s. Printed as a ratio to the bar and to the
baseline. Run: ``python -m bench.replay_seek`` (``N=200000`` for a quick look).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from rtnb.client.replay import replay
from rtnb.protocol import encode
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.recorded import Recording, frames_table

from ._frames import TOPICS, make_events, wire

N = int(os.environ.get("N", "1000000"))
T0 = 1_790_000_000.0
RATE = 1000.0  # frames per recorded second


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


def _seek(rep: object, t: float) -> float:
    start = time.perf_counter()
    rep.seek(t)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t_build = time.perf_counter()
        path = synthetic_recording(N, Path(tmp) / "rec.parquet")
        log = EnvelopeLog.read_parquet(path)
        t_build = time.perf_counter() - t_build
    rng = random.Random(3)
    rep = replay(log, speed=None, paused=True)
    start, end = rep.start.timestamp(), rep.end.timestamp()
    first = _seek(rep, end)  # one pass: leaves the checkpoints
    targets = [rng.uniform(start, end) for _ in range(20)]
    times = [_seek(rep, t) for t in targets]
    n_cp = len(rep._player.checkpoints)
    rep.close()

    base = replay(log, speed=None, paused=True)
    base._player.checkpoint_rows = 0
    _seek(base, end)
    base_times = [_seek(base, t) for t in targets[:3]]
    base.close()
    worst, mean = max(times), sum(times) / len(times)
    base_mean = sum(base_times) / len(base_times)
    print(
        f"replay seek: {N:,} events ({len(log.recording or ()):,} frames), built in {t_build:.1f} s"
    )
    print(f"first seek to the end (plays every row, leaves {n_cp} checkpoints): {first:.2f} s")
    print(
        f"20 random seeks with checkpoints: worst {worst:.3f} s ({worst / 1.0:.2f}× the 1 s bar), "
        f"mean {mean:.3f} s"
    )
    print(
        f"baseline without checkpoints (3 seeks): mean {base_mean:.2f} s; "
        f"checkpoints are {base_mean / mean:.0f}× faster"
    )


if __name__ == "__main__":
    main()
