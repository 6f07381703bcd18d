"""The single-event frame fast path (``PipelineSingle.feed``) against the per-event path
(``Pipeline._single = False``): the same frames give the same store contents, every
``TopicState`` field, the same duplicate memory, change cursors, resolved mutations,
hook calls and log rows."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.dedupe import Deduper
from rtnb.core.pipeline import Pipeline
from rtnb.protocol import Batch, Heartbeat, Subscribed, encode
from rtnb.telemetry import EnvelopeLog
from tests.helpers import RecordingSink, event, snapshot

#: sequence topics (``m`` with a custom merge), an ``entity`` topic, and one never subscribed
TOPICS = ("a", "b", "m", "e")
ORDERING = {"a": "sequence", "b": "sequence", "m": "sequence", "e": "entity"}


def _merge(cur: dict[str, Any] | None, etype: str, payload: Any) -> dict[str, Any] | None:
    if etype.endswith(".deleted"):
        return None
    return {**(cur or {}), **payload, "merged": True}


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Steps, mostly single-event frames: the next event (sometimes a delete, a mutation
    id, a big payload), gaps, duplicates, swaps, unknown topics, invalid frames,
    replays (``subscribed complete``), snapshots, heartbeats, batches, and mutations
    asked for (so confirmations matter)."""
    nxt = dict.fromkeys(TOPICS, 1)
    steps: list[tuple[str, Any]] = [
        ("frame", encode(Subscribed(topic=t, replay="none"))) for t in TOPICS
    ]
    steps += [("frame", encode(snapshot(t, 0, {}))) for t in TOPICS]
    sent: list[bytes] = []
    held: list[bytes] = []
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(
            st.sampled_from(
                ["next"] * 8
                + ["big"]
                + ["gap", "dup", "swap", "unknown", "invalid", "replay", "snapshot"]
                + ["heartbeat", "batch", "mutate", "release"]
            )
        )
        topic = draw(st.sampled_from((*TOPICS, "a", "a")))
        if kind in ("next", "swap"):
            s = nxt[topic]
            nxt[topic] += 1
            typ = draw(st.sampled_from(["x.updated"] * 8 + ["x.deleted"]))
            pad = "p" * draw(st.sampled_from([0, 0, 5, 120, 300]))
            payload: dict[str, Any] = {"v": s, "pad": pad}
            if draw(st.integers(0, 7)) == 0:
                payload["clientMutationId"] = f"m{draw(st.integers(0, 3))}"
            ev = event(s, topic=topic, entity=f"e{draw(st.integers(0, 7))}", type=typ,
                       payload=payload)  # fmt: skip
            frame = encode(ev)
            sent.append(frame)
            if kind == "swap":  # held back, sent after a later event
                held.append(frame)
            else:
                steps.append(("frame", frame))
        elif kind == "big":  # large entities: a small cap is passed, the topic frozen
            for _ in range(3):
                s = nxt[topic]
                nxt[topic] += 1
                ev = event(s, topic=topic, entity=f"big{s}", payload={"pad": "p" * 300})
                sent.append(encode(ev))
                steps.append(("frame", sent[-1]))
        elif kind == "release" and held:
            steps.append(("frame", held.pop(0)))
        elif kind == "gap":
            nxt[topic] += draw(st.integers(1, 3))
        elif kind == "dup" and sent:
            steps.append(("frame", draw(st.sampled_from(sent))))
        elif kind == "unknown":
            steps.append(("frame", encode(event(nxt[topic], topic="zzz"))))
        elif kind == "invalid":
            steps.append(("frame", b'{"op":"event","id":1}'))
        elif kind == "replay":
            latest = nxt[topic] + draw(st.integers(-1, 4))
            steps.append(
                ("frame", encode(Subscribed(topic=topic, replay="complete",
                                            latest_sequence=max(0, latest))))
            )  # fmt: skip
        elif kind == "snapshot":
            seq = draw(st.integers(0, nxt[topic] + 3))
            steps.append(("frame", encode(snapshot(topic, seq, {"s": {"v": seq}}))))
            nxt[topic] = seq + 1
        elif kind == "heartbeat":
            steps.append(("frame", encode(Heartbeat(server_time=1.0, sequences={topic: 1}))))
        elif kind == "batch":
            msgs = []
            for _ in range(draw(st.integers(1, 4))):
                msgs.append(event(nxt[topic], topic=topic, payload={"b": 1}))
                nxt[topic] += 1
            steps.append(("frame", encode(Batch(messages=msgs))))
        elif kind == "mutate":
            steps.append(("mutate", (f"m{draw(st.integers(0, 3))}", topic)))
    steps += [("frame", f) for f in held]
    return steps


def _feed(
    steps: list[tuple[str, Any]],
    single: bool,
    cap: int,
    dedupe: int,
    max_age: float,
    hooked: bool,
    rows: bool = False,
) -> dict[str, Any]:
    log = EnvelopeLog()
    sink = RecordingSink()  # rows one by one, as given
    p = Pipeline(
        sink if rows else log,
        deduper=Deduper(max_entries=dedupe, max_age=max_age),
        max_topic_bytes=cap,
        max_gap_buffer=3,
    )
    p._single = single  # type: ignore[misc]
    for t in TOPICS:
        p.add_topic(t, ORDERING[t], merge=_merge if t == "m" else None)
    cursor = p.topics["a"].store.open_changes()
    changes: list[Any] = []
    calls: list[Any] = []
    if hooked:

        def hook(ts: Any, ev: Any, outcome: Any) -> None:
            calls.append(
                (ts.name, ev.id, str(outcome), ts.applied, ts.last_token, ts.status,
                 ts.last_event_at, ts.store.nbytes, dict(ts.store.entities),
                 ev.id in p.deduper)
            )  # fmt: skip

        p.on_apply = hook
    controls = []
    for k, (what, arg) in enumerate(steps):
        now = float(k)
        if what == "frame":
            controls.append([repr(c) for c in p.feed(arg, now)])
        else:
            cmid, topic = arg
            if p.ledger.get(cmid) is None:
                p.mutate(cmid, topic, "e1", {"w": k}, now=now, timeout=30.0, degraded=False)
        if k % 7 == 0:
            changes.append(cursor.take())
    resolved = [(r.client_mutation_id, r.status, r.topic) for r in p.take_resolved()]
    if rows:
        return {"rows": [{k: repr(v) for k, v in r.items()} for r in sink.rows]}
    snap = log._envelopes.snapshot()
    table = {
        name: [snap.categories[name][c] if c >= 0 else None for c in col]
        if name in snap.categories
        else [repr(v) for v in col]  # NaN == NaN as text
        for name, col in snap.columns.items()
    }
    topics = {
        name: {
            slot: repr(getattr(ts, slot))
            for slot in type(ts).__slots__
            if slot not in ("orderer", "store")
        }
        | {
            "position": ts.orderer.position(),
            "orderer": {s: repr(getattr(ts.orderer, s)) for s in type(ts.orderer).__slots__},
            "store": {
                s: repr(getattr(ts.store, s))
                for s in type(ts.store).__slots__
                if s not in ("cursors", "merge")
            },
        }
        for name, ts in p.topics.items()
    }
    d = p.deduper
    return {
        "rows": table,
        "errors": snap.sparse,
        "tally": snap.tally,
        "topics": topics,
        "dedupe": (list(d.fifo), dict(d._seen), d.evicted, d.expires),
        "calls": calls,
        "changes": changes,
        "controls": controls,
        "resolved": resolved,
        "ledger": sorted((c, r.status) for c, r in p.ledger._open.items()),
        "fault": p.fault,
    }


@settings(max_examples=200, deadline=None)
@given(
    streams(),
    st.sampled_from([400, 1_000, 2_000, 10**6]),
    st.sampled_from([4, 64, 50_000]),
    st.sampled_from([5.0, 600.0]),
    st.booleans(),
)
def test_single_event_frames_decide_exactly_as_the_per_event_path(
    steps: list[tuple[str, Any]], cap: int, dedupe: int, max_age: float, hooked: bool
) -> None:
    fast = _feed(steps, True, cap, dedupe, max_age, hooked)
    slow = _feed(steps, False, cap, dedupe, max_age, hooked)
    assert fast == slow


@settings(max_examples=50, deadline=None)
@given(streams())
def test_a_plain_sink_gets_the_same_rows_from_the_fast_path(
    steps: list[tuple[str, Any]],
) -> None:
    assert _feed(steps, True, 10**6, 50_000, 600.0, False, rows=True) == _feed(
        steps, False, 10**6, 50_000, 600.0, False, rows=True
    )


def test_the_stream_of_bench_pipeline_takes_the_fast_path() -> None:
    """The common case really is folded: the per-event path sees only the duplicates
    and the frames that make a measure of the state due."""
    from bench._frames import make_events, wire

    frames = wire(make_events(3_000))
    p = Pipeline(EnvelopeLog())
    for t in ("incidents", "fleet", "prices"):
        p.add_topic(t, "sequence")
    slow: list[str] = []
    inner = p._event

    def counted(ev: Any, now: float, nbytes: int, bound: int) -> None:
        slow.append(ev.id)
        inner(ev, now, nbytes, bound)

    p._event = counted  # type: ignore[method-assign]
    for f in frames:
        p.feed(f, 1.0)
    assert sum(ts.applied for ts in p.topics.values()) == 3_000
    assert len(slow) < 0.07 * len(frames)


def test_a_copy_of_the_pipeline_logs_to_the_log_it_shares() -> None:
    """The fast path borrows its log's row buffer: a deep copy sharing the log (a
    replay's checkpoint: ``ReplayPlayer._copy``) borrows it again, never a stray copy."""
    import copy

    log = EnvelopeLog()
    p = Pipeline(log)
    p.add_topic("a")
    p.feed(encode(event(1, topic="a")), 1.0)
    saved = copy.deepcopy(p, {id(log): log, id(p.decoder): p.decoder})
    saved.feed(encode(event(2, topic="a")), 2.0)
    assert log.counts["applied"] == 2
    assert log.envelopes["sequence"].tolist() == [1, 2]
