"""Memory under sustained load (issue 22, item 4): one connection, 60 s, flat RSS.

One WebSocket client subscribed to one topic of 10,000 entities while the
reference server (memory store, same process) publishes ``publish_many``
batches of 1,000 as fast as the client keeps up: the publisher runs at most
``WINDOW`` events ahead of what the client has applied, so no queue grows and
the rate printed is the highest this box sustains end to end.

RSS (``/proc/self/statm``) is sampled every second. The client's telemetry
ring (``ENVELOPE_CAPACITY`` rows) fills after that many events; from then on
memory should stay on that plateau. Printed: RSS at start, when the ring filled,
at the end, and the growth after the ring filled (bar: the end within the
plateau, i.e. growth after the ring filled ≤ 5% of the growth up to it), beside
the plateau measured before this bench existed (+235 MB after 1.2M events).

``python -m bench.memory_soak [seconds]`` (default 60).
"""

from __future__ import annotations

import os
import sys
import time

import rtnb
from rtnb.server import serve
from rtnb.telemetry.schema import ENVELOPE_CAPACITY

SECONDS = 60.0
BATCH = 1_000
ENTITIES = 10_000
WINDOW = 20_000  # events the publisher may run ahead of the client's applied count
PLATEAU_BEFORE_MB = 235  # issue 22: +235 MB after 1.2M events, measured before
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def main(argv: list[str]) -> None:
    seconds = float(argv[0]) if argv else SECONDS
    ok = {True: "PASS", False: "MISS"}
    with serve(port=0) as srv:
        srv.declare("soak")
        token = srv.issue_token(tenant="acme", user="soak", role="viewer")
        conn = rtnb.connect(srv.url, token=token, transport="websocket", shared=False)
        conn.wait_for("subscribed", 15)
        topic = conn.subscribe("soak")
        while topic.freshness.status != "live":
            time.sleep(0.01)
        state = topic._state
        attempt0 = conn.state.attempt
        base = state.applied
        samples: list[tuple[float, int, float]] = []  # (seconds, applied, RSS MB)
        start = time.perf_counter()
        samples.append((0.0, 0, rss_mb()))
        next_sample = start + 1.0
        k = 0
        while (now := time.perf_counter()) - start < seconds:
            if now >= next_sample:
                samples.append((now - start, state.applied - base, rss_mb()))
                next_sample += 1.0
            if k - (state.applied - base) > WINDOW:
                time.sleep(0.001)
                continue
            srv.publish_many(
                "soak",
                [
                    ("tick.updated", f"e-{j % ENTITIES}", {"v": j, "note": "x" * 40})
                    for j in range(k, k + BATCH)
                ],
                tenant="acme",
            )
            k += BATCH
        deadline = time.monotonic() + 30
        while state.applied - base < k and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        applied = state.applied - base
        samples.append((elapsed, applied, rss_mb()))
        reconnects = conn.state.attempt - attempt0
        conn.close()
    rss0 = samples[0][2]
    full = next((s for s in samples if s[1] >= ENVELOPE_CAPACITY), None)
    end = samples[-1]
    print(
        f"one WebSocket connection, {seconds:.0f} s, publish_many batches of {BATCH:,} "
        f"over {ENTITIES:,} entities, publisher ≤ {WINDOW:,} events ahead"
    )
    print(
        f"events published {k:,}, applied {applied:,}: {applied / elapsed:,.0f} events/s sustained"
    )
    if reconnects:
        print(f"reconnects during the run: {reconnects}")
    print(f"{'t (s)':>8}{'applied':>12}{'RSS MB':>10}{'Δ MB':>9}")
    step = max(1, len(samples) // 12)
    for t, n, mb in samples[::step] + ([end] if (len(samples) - 1) % step else []):
        print(f"{t:>8.1f}{n:>12,}{mb:>10.1f}{mb - rss0:>+9.1f}")
    print(f"RSS at start {rss0:.1f} MB, at end {end[2]:.1f} MB: {end[2] - rss0:+.1f} MB")
    if full is None:
        print(
            f"the telemetry ring ({ENVELOPE_CAPACITY:,} rows) did not fill: no plateau to "
            "compare with (run longer)"
        )
        return
    up_to, after = full[2] - rss0, end[2] - full[2]
    ratio = after / up_to if up_to > 0 else 0.0
    print(
        f"ring full ({ENVELOPE_CAPACITY:,} rows) at {full[0]:.0f} s: {up_to:+.1f} MB; "
        f"after it {after:+.1f} MB over {end[1] - full[1]:,} more events"
    )
    print(
        f"growth after the ring filled / growth up to it: {ratio:.2f}×  ≤ 0.05× "
        f"{ok[ratio <= 0.05]}; end vs the plateau measured before "
        f"(+{PLATEAU_BEFORE_MB} MB): {(end[2] - rss0) / PLATEAU_BEFORE_MB:.2f}×  ≤ 1.00× "
        f"{ok[end[2] - rss0 <= PLATEAU_BEFORE_MB]}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
