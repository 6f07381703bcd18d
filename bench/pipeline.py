"""Pipeline throughput: decode → validate → dedupe → order → merge → log.

Realistic ~300-byte frames on three topics with 5% duplicates and 5% of
adjacent pairs swapped, through the full pipeline including the telemetry
log, beside msgspec decoding alone of the same frames in the same run.

Bars (DESIGN.md §6): ≥ 250k envelopes/s; ≤ 5× decode-only; ≤ 200 bytes per
logged envelope.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc

import msgspec

from rtnb.core.pipeline import Pipeline
from rtnb.protocol import ClientBound

try:  # the wire's own types: every topic matched by msgspec (what "decode only" was)
    from rtnb.protocol.codec import _STRICT_CLIENT_BOUND as WIRE_TYPES
except ImportError:  # a tree before issue 22's decoder: ClientBound is the wire's type
    WIRE_TYPES = ClientBound
from rtnb.telemetry import EnvelopeLog

from ._frames import make_events, wire

N = 200_000
REPEATS = 5


def run_pipeline(frames: list[bytes]) -> float:
    log = EnvelopeLog(envelope_capacity=len(frames) * 2)
    p = Pipeline(log)
    for topic in ("incidents", "fleet", "prices"):
        p.add_topic(topic, "sequence")
    now = time.time()
    feed = p.feed
    gc.collect()
    start = time.perf_counter()
    for f in frames:
        feed(f, now)
    return time.perf_counter() - start


def run_decode(frames: list[bytes]) -> float:
    # The baseline is msgspec decoding the wire's types with all their checks, as before
    # the client decoder checked event topics once per distinct topic (issue 22).
    dec = msgspec.json.Decoder(WIRE_TYPES)
    decode = dec.decode
    gc.collect()
    start = time.perf_counter()
    for f in frames:
        decode(f)
    return time.perf_counter() - start


def log_bytes_per_envelope(frames: list[bytes]) -> float:
    n = min(len(frames), 100_000)
    tracemalloc.start()
    log = EnvelopeLog(envelope_capacity=n)
    p = Pipeline(log)
    for topic in ("incidents", "fleet", "prices"):
        p.add_topic(topic, "sequence")
    # Measure the log alone: feed the pipeline, then subtract a run without a log.
    before = tracemalloc.get_traced_memory()[0]
    now = time.time()
    for f in frames[:n]:
        p.feed(f, now)
    with_log = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    tracemalloc.start()
    p2 = Pipeline(None)
    for topic in ("incidents", "fleet", "prices"):
        p2.add_topic(topic, "sequence")
    before = tracemalloc.get_traced_memory()[0]
    for f in frames[:n]:
        p2.feed(f, now)
    without_log = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return (with_log - without_log) / n


def main() -> None:
    events = make_events(N)
    frames = wire(events)
    size = statistics.mean(len(f) for f in frames)
    pipe = [run_pipeline(frames) for _ in range(REPEATS)]
    dec = [run_decode(frames) for _ in range(REPEATS)]
    t_pipe, t_dec = min(pipe), min(dec)
    rate = len(frames) / t_pipe
    ratio = t_pipe / t_dec
    bpe = log_bytes_per_envelope(frames)
    ok = {True: "PASS", False: "MISS"}
    print(f"{len(frames):,} frames (mean {size:.0f} B, 5% dup, 5% reordered), best of {REPEATS}")
    print(f"{'measure':<34}{'value':>16}  bar")
    print(f"{'msgspec decode only':<34}{len(frames) / t_dec:>12,.0f} /s")
    print(f"{'rtnb pipeline (incl. log)':<34}{rate:>12,.0f} /s  ≥ 250,000/s {ok[rate >= 250_000]}")
    print(f"{'pipeline / decode-only time':<34}{ratio:>15.2f}×  ≤ 5× {ok[ratio <= 5]}")
    print(f"{'log bytes per envelope':<34}{bpe:>14.0f} B  ≤ 200 B {ok[bpe <= 200]}")


if __name__ == "__main__":
    main()
