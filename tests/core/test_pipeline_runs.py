"""The batch run path (``Pipeline._run``) against the per-event path: the same frames
give the same state, counters, statuses, duplicate memory, hook calls and log rows."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.dedupe import Deduper
from rtnb.core.pipeline import Pipeline
from rtnb.protocol import Batch, Pong, Subscribed, encode
from rtnb.telemetry import EnvelopeLog
from tests.helpers import RecordingSink, event, snapshot

TOPICS = ("a", "b")


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """Frames of two sequence topics and an unknown one: mostly contiguous batches, with
    gaps, duplicates (by id, or a repeated id at the next sequence), swaps, deletes,
    mutation ids, replays (``subscribed complete``), snapshots (resets), control frames."""
    nxt = dict.fromkeys(TOPICS, 1)
    frames: list[bytes] = [encode(Subscribed(topic=t, replay="none")) for t in TOPICS]
    frames += [encode(snapshot(t, 0, {})) for t in TOPICS]
    sent: list[Any] = []
    for _ in range(draw(st.integers(1, 12))):
        msgs: list[Any] = []
        for _ in range(draw(st.integers(1, 12))):
            kind = draw(
                st.sampled_from(
                    ["run", "run", "run", "gap", "dup", "same-id", "swap", "unknown", "pong"]
                )
            )
            topic = draw(st.sampled_from(TOPICS))
            if kind == "run":
                for _ in range(draw(st.integers(1, 6))):
                    s = nxt[topic]
                    nxt[topic] += 1
                    typ = draw(st.sampled_from(["x.updated"] * 6 + ["x.deleted"]))
                    payload: dict[str, Any] = {"v": s, "pad": "p" * draw(st.integers(0, 40))}
                    if draw(st.integers(0, 9)) == 0:
                        payload["clientMutationId"] = f"m{s}"
                    ev = event(s, topic=topic, entity=f"e{s % 5}", type=typ, payload=payload)
                    msgs.append(ev)
                    sent.append(ev)
            elif kind == "gap":
                nxt[topic] += draw(st.integers(1, 3))
            elif kind == "dup" and sent:
                msgs.append(draw(st.sampled_from(sent)))
            elif kind == "same-id" and sent:
                old = draw(st.sampled_from(sent))
                s = nxt[old.topic]
                nxt[old.topic] += 1
                msgs.append(event(s, topic=old.topic, id=old.id))
            elif kind == "swap" and len(msgs) >= 2:
                msgs[-1], msgs[-2] = msgs[-2], msgs[-1]
            elif kind == "unknown":
                msgs.append(event(nxt[topic], topic="zzz"))
            elif kind == "pong":
                msgs.append(Pong(id="p", server_time=1.0))
        frames.append(encode(Batch(messages=msgs)))
        extra = draw(st.integers(0, 9))
        topic = draw(st.sampled_from(TOPICS))
        if extra == 0:  # a reset (the log restarted, or a snapshot ahead)
            seq = draw(st.integers(0, nxt[topic] + 3))
            frames.append(encode(snapshot(topic, seq, {"s": {"v": seq}})))
            nxt[topic] = seq + 1
        elif extra == 1:  # a replay up to a sequence ahead of the position
            latest = nxt[topic] + draw(st.integers(0, 8))
            frames.append(
                encode(Subscribed(topic=topic, replay="complete", latest_sequence=latest))
            )
        elif extra == 2:  # one event alone
            frames.append(encode(event(nxt[topic], topic=topic, payload={"alone": 1})))
            nxt[topic] += 1
    return frames


def _run(
    frames: list[bytes], runs: bool, cap: int, dedupe: int, hooked: bool, rows: bool = False
) -> dict[str, Any]:
    log = EnvelopeLog()
    sink = RecordingSink()  # a sink without append_envelopes: rows one by one
    p = Pipeline(sink if rows else log, deduper=Deduper(max_entries=dedupe), max_topic_bytes=cap)
    p._runs = runs  # type: ignore[misc]
    for t in TOPICS:
        p.add_topic(t, "sequence")
    calls: list[Any] = []
    if hooked:

        def hook(ts: Any, ev: Any, outcome: Any) -> None:
            calls.append(
                (ts.name, ev.id, str(outcome), ts.applied, ts.last_token, ts.status,
                 dict(ts.store.entities))
            )  # fmt: skip

        p.on_apply = hook
    for k, f in enumerate(frames):
        p.feed(f, float(k))
    if rows:
        return {"rows": [{k: repr(v) for k, v in r.items()} for r in sink.rows]}
    snap = log._envelopes.snapshot()
    rows = {
        name: [snap.categories[name][c] if c >= 0 else None for c in col]
        if name in snap.categories
        else [repr(v) for v in col]  # NaN == NaN as text
        for name, col in snap.columns.items()
    }
    topics = {
        name: (
            ts.status, ts.applied, ts.gaps, ts.unrecoverable, ts.last_token, ts.last_event_at,
            ts.replay_until, ts.over_limit, ts.orderer.position(), ts.store.entities,
            ts.store.sequences, ts.store.nbytes, ts.store.prepaid, ts.store.over,
        )
        for name, ts in p.topics.items()
    }  # fmt: skip
    d = p.deduper
    return {
        "rows": rows,
        "errors": snap.sparse,
        "tally": snap.tally,
        "topics": topics,
        "dedupe": (list(d.fifo), dict(d._seen), d.evicted),
        "calls": calls,
    }


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.sampled_from([300, 2_000, 10**6]),
    st.sampled_from([8, 64, 50_000]),
    st.booleans(),
)
def test_batch_runs_decide_exactly_as_the_per_event_path(
    frames: list[bytes], cap: int, dedupe: int, hooked: bool
) -> None:
    fast = _run(frames, True, cap, dedupe, hooked)
    slow = _run(frames, False, cap, dedupe, hooked)
    assert fast == slow


@settings(max_examples=40, deadline=None)
@given(streams())
def test_a_sink_without_bulk_append_gets_the_same_rows_one_by_one(frames: list[bytes]) -> None:
    assert _run(frames, True, 10**6, 50_000, False, rows=True) == _run(
        frames, False, 10**6, 50_000, False, rows=True
    )
