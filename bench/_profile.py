"""Workloads to profile for issue 22 (not a benchmark: ``python -m bench`` skips it).

Run under a sampling profiler that sees every thread, then summarise::

    py-spy record -r 250 -f raw --threads -o /tmp/e2e.txt -- \\
        .venv/bin/python -m bench._profile e2e
    .venv/bin/python -m bench._profile summary /tmp/e2e.txt

``e2e``: the server's ``publish_many`` path, 1,000-event batches as fast as they go
(memory store, one topic of 10,000 entities) into one rtnb WebSocket client, 10 s.
``pipeline``: the client's apply path alone: ``Pipeline.feed`` of ``batch`` frames of
500 events (what the server sends a subscriber with a backlog), 10 s.
``summary FILE``: per thread (publisher / server loop / client runtime / other), the
share of its busy samples by function, self and inclusive (samples whose innermost
frame is a wait -- ``select``, ``Condition.wait``, ``sleep`` -- are left out).
"""

from __future__ import annotations

import collections
import re
import sys
import time

SECONDS = 10.0
ENTITIES = 10_000


def e2e(seconds: float = SECONDS) -> None:
    import rtnb
    from rtnb.server import serve

    with serve(port=0) as srv:
        srv.declare("p")
        token = srv.issue_token(tenant="acme", user="prof", role="viewer")
        conn = rtnb.connect(srv.url, token=token, transport="websocket", shared=False)
        conn.wait_for("subscribed", 15)
        t = conn.subscribe("p")
        while t.freshness.status != "live":
            time.sleep(0.01)
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            if k - t._state.applied > 20_000:  # stay within what the client keeps up with
                time.sleep(0.001)
                continue
            srv.publish_many(
                "p",
                [
                    ("tick.updated", f"e-{j % ENTITIES}", {"v": j, "note": "x" * 40})
                    for j in range(k, k + 1000)
                ],
                tenant="acme",
            )
            k += 1000
        while t._state.applied < k and time.perf_counter() - start < seconds + 30:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        print(f"e2e: {k:,} published, {t._state.applied:,} applied, {k / elapsed:,.0f}/s")
        conn.close()


def batch_frames(n_frames: int, per_frame: int = 500) -> list[str]:
    from rtnb.protocol import encode_str
    from rtnb.server.session import batch_text
    from rtnb.server.storage import MemoryStorage
    from rtnb.server.tokens import ReplayTokens
    from rtnb.server.topiclog import TopicLog

    log = TopicLog("acme", "p", MemoryStorage(), ReplayTokens(b"k" * 32), retention=10**9)
    frames = []
    k = 0
    for _ in range(n_frames):
        texts = []
        for _ in range(per_frame):
            _, event = log.append("tick.updated", {"v": k, "note": "x" * 40}, f"e-{k % ENTITIES}")
            texts.append(encode_str(event))
            k += 1
        frames.append(batch_text(texts))
    return frames


def pipeline(seconds: float = SECONDS) -> None:
    from rtnb.core.pipeline import Pipeline
    from rtnb.telemetry import EnvelopeLog

    frames = batch_frames(200)
    p = Pipeline(EnvelopeLog())
    p.add_topic("p", "sequence")
    start = time.perf_counter()
    n = rounds = 0
    while time.perf_counter() - start < seconds:
        p = Pipeline(EnvelopeLog())
        p.add_topic("p", "sequence")
        for f in frames:
            p.feed(f, time.time())
        n += 500 * len(frames)
        rounds += 1
    print(
        f"pipeline: {n:,} events in batch frames of 500, {n / (time.perf_counter() - start):,.0f}/s"
    )


_IDLE = re.compile(r"^(\w+\.)?(select|wait|sleep|_wait_for_tstate_lock) \(")
_FRAME = re.compile(r"^(.*) \((.*?):\d+\)$")


def _who(stack: list[str]) -> str:
    text = ";".join(stack)
    if "rtnb/client/runtime.py" in text:
        return "client runtime thread"
    if "rtnb/server/runner.py" in text:
        return "server loop thread"
    if "publish_many" in text or "e2e (" in text or "pipeline (" in text:
        return "main thread (publisher / pipeline)"
    return "other"


def _name(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    fn, path = m.groups()
    path = re.sub(r".*/site-packages/", "", path)
    path = re.sub(r".*/(rtnb|bench)/", r"\1/", path)
    path = re.sub(r".*/lib/python3\.\d+/", "", path)
    return f"{fn} ({path})"


def summary(path: str, top: int = 25) -> None:
    per: dict[str, tuple[collections.Counter[str], collections.Counter[str]]] = {}
    totals: collections.Counter[str] = collections.Counter()
    idle: collections.Counter[str] = collections.Counter()
    with open(path) as f:
        for line in f:
            stack_text, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack_text:
                continue
            count = int(count_text)
            stack = [s for s in stack_text.split(";") if not s.startswith("thread (")]
            if not stack:
                continue
            who = _who(stack)
            if _IDLE.search(stack[-1]):  # waiting, not working: left out of the shares
                idle[who] += count
                continue
            totals[who] += count
            self_c, incl = per.setdefault(who, (collections.Counter(), collections.Counter()))
            names = [_name(s) for s in stack]
            self_c[names[-1]] += count
            for name in set(names):
                incl[name] += count
    grand = sum(totals.values())
    for who, total in totals.most_common():
        self_c, incl = per[who]
        print(
            f"\n## {who}: {total:,} busy samples ({total / grand:.0%} of all busy ones; "
            f"{idle[who]:,} more waiting, left out); % of its busy samples"
        )
        print(f"{'self %':>7} {'incl %':>7}  function")
        for name, c in self_c.most_common(top):
            print(f"{c / total:>7.1%} {incl[name] / total:>7.1%}  {name}")
        print("-- inclusive (top)")
        for name, c in incl.most_common(top):
            print(f"{'':>7} {c / total:>7.1%}  {name}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "e2e"
    if cmd == "summary":
        summary(sys.argv[2])
    elif cmd == "pipeline":
        pipeline(float(sys.argv[2]) if len(sys.argv) > 2 else SECONDS)
    else:
        e2e(float(sys.argv[2]) if len(sys.argv) > 2 else SECONDS)
