"""A/B of single client costs on batch frames (issue 22; not a benchmark: ``python -m
bench`` skips it). ``python -m bench._levers``: ``Pipeline.feed`` of 200 frames of 500
events (10,000 entities), best of 5, with one cost added or taken away by monkeypatching.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from rtnb.core.pipeline import Pipeline
from rtnb.protocol import ClientBound
from rtnb.telemetry import EnvelopeLog

from ._profile import batch_frames


class _Topic:
    """What a live ``Topic`` handle registers: a dispatch over (no) callbacks."""

    def __init__(self) -> None:
        self._callbacks: list[Any] = []

    def _dispatch(self, event: Any, outcome: str) -> None:
        for cb in tuple(self._callbacks):
            cb(event, outcome)


def _hook(handlers: dict[str, list[Any]]) -> Any:
    def on_apply(ts: Any, ev: Any, outcome: Any) -> None:
        for h in handlers.get(ts.name, ()):
            h(ev, str(outcome))

    return on_apply


def run(frames: list[str], *, on_apply: bool = False, log: bool = True, runs: bool = True) -> float:
    """Best µs per event over 5 rounds. ``runs=False``: every event of a batch frame
    one by one (the per-event path), not the batch run path."""
    n = 500 * len(frames)
    best = 1e9
    for _ in range(5):
        p = Pipeline(EnvelopeLog() if log else None)
        p._runs = runs  # type: ignore[misc]
        p.add_topic("p", "sequence")
        if on_apply:
            p.set_on_apply(_hook({"p": [_Topic()._dispatch]}))
        t = time.perf_counter()
        for f in frames:
            p.feed(f, 1.0)
        best = min(best, time.perf_counter() - t)
    return best / n * 1e6


def decode_only(frames: list[str], decode: Any) -> float:
    t = time.perf_counter()
    for f in frames:
        decode(f)
    return (time.perf_counter() - t) / (500 * len(frames)) * 1e6


def main() -> None:
    frames = batch_frames(200)
    base = run(frames)
    rows = [
        ("pipeline as the pipeline bench feeds it (no on_apply)", base),
        ("+ the on_apply chain a live Topic installs", run(frames, on_apply=True)),
        ("every event one by one (the per-event path)", run(frames, runs=False)),
        ("- telemetry log (NullSink)", run(frames, log=False)),
        (
            "msgspec typed decode of the frames alone",
            decode_only(frames, msgspec.json.Decoder(ClientBound).decode),
        ),
        (
            "msgspec untyped decode alone (the raw reader's)",
            decode_only(frames, msgspec.json.decode),
        ),
    ]
    for label, us in rows:
        print(f"{label:<56}{us:>6.2f} µs/event  {us / base:.2f}×")


if __name__ == "__main__":
    main()
