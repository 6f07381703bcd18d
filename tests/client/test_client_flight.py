"""The flight recorder: every connection keeps its recent frames, and
``conn.log.to_parquet`` writes them so that ``rtnb.replay`` plays the window back."""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rtnb
from rtnb.client.flight import ROW_OVERHEAD, FlightRecorder
from rtnb.client.replay import replay
from rtnb.core.backoff import Backoff
from rtnb.telemetry import EnvelopeLog
from tests.conftest import wait_until

TOPICS = {"fleet": "sequence", "prices": "entity"}


def _applied(conn: rtnb.Connection) -> int:
    counts = conn.log.counts
    return counts["applied"] + counts["replayed"]


_TOKEN = re.compile(r'"(?:replayToken|token|latestToken)"\s*:\s*"([^"]+)"')


def _publish(srv: Any, round_: int, n: int) -> None:
    """``n`` events over 40 entities of each topic, in batches (state depends on order)."""
    for name in TOPICS:
        srv.publish_many(
            name,
            [("updated", f"e{i % 40}", {"round": round_, "i": i}) for i in range(n)],
            tenant="acme",
        )


def _chaos_session(tmp_path: Path, limits: rtnb.Limits | None) -> dict[str, Any]:
    """A real server with chaos on and a disconnect; the live end state and the file."""
    with rtnb.serve(port=0) as srv:
        for name in TOPICS:
            srv.declare(name)
        conn = rtnb.connect(
            srv.url,
            token=srv.issue_token(tenant="acme", user="ana"),
            shared=False,
            backoff=Backoff(base=0.1, cap=0.3),
            limits=limits,
        )
        tokens: set[str] = set()
        conn.add_tap(lambda data, *_: tokens.update(_TOKEN.findall(str(data))))
        topics = {name: conn.subscribe(name, ordering) for name, ordering in TOPICS.items()}
        wait_until(lambda: all(t.freshness.status == "live" for t in topics.values()))
        _publish(srv, 0, 200)
        srv.chaos.set(drop=0.05, duplicate=0.05, reorder=0.1, delay_ms=(0, 3), seed=7)
        for round_ in range(1, 6):
            _publish(srv, round_, 300)
            if round_ == 3:
                srv.chaos.disconnect_all()
                conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=15)
        srv.chaos.set()
        _publish(srv, 9, 50)  # the tail end: gaps left by drops are noticed and replayed
        wait_until(
            lambda: all(
                t.server_entities == srv.truth(n, tenant="acme") for n, t in topics.items()
            ),
            timeout=20,
        )
        path = tmp_path / "flight.parquet"
        conn.log.to_parquet(path)
        live = {name: t.server_entities for name, t in topics.items()}
        truth = {name: srv.truth(name, tenant="acme") for name in topics}
        flight = conn.flight
        conn.close()
    return {"path": path, "live": live, "truth": truth, "flight": flight, "tokens": tokens}


def _replayed(path: Path) -> tuple[rtnb.Replay, dict[str, Any]]:
    rep = replay(EnvelopeLog.read_parquet(path), speed=None)
    handles = {name: rep.subscribe(name) for name in TOPICS}
    assert rep.wait(30), "the replay did not finish"
    return rep, {name: h.server_entities for name, h in handles.items()}


def test_to_parquet_of_a_live_log_replays_to_the_live_state(tmp_path: Path) -> None:
    run = _chaos_session(tmp_path, None)
    assert run["live"] == run["truth"]
    rep, replayed = _replayed(run["path"])
    assert replayed == run["live"]
    assert not rep.seeded, "the whole session fits the default window: no seed"
    assert rep.source.recording is not None
    info = rep.source.recording.info
    assert info["flight"] and info["frames_evicted"] == 0
    assert "seed" not in repr(rep)
    data = run["path"].read_bytes()
    assert len(run["tokens"]) > 3
    assert not [t for t in run["tokens"] if t.encode() in data]
    frames = b"\n".join(rep.source.recording.frames.column("frame").to_pylist())
    assert not [t for t in run["tokens"] if t.encode() in frames]


def test_a_ring_smaller_than_the_run_replays_its_window_from_a_seed(tmp_path: Path) -> None:
    # The run is ~1.1 MB of frames, the largest ~130 KB (replay batches): a 256 KiB
    # ring evicts, and every frame fits beside a seed.
    limits = rtnb.Limits(flight_bytes=256 * 1024)
    run = _chaos_session(tmp_path, limits)
    flight: FlightRecorder = run["flight"]
    assert flight.frames_evicted > 0, "the run is bigger than the ring"
    assert flight.nbytes <= limits.flight_bytes
    rep, replayed = _replayed(run["path"])
    assert rep.seeded
    assert rep.window_start > rep.start, "the log's rows begin before the frames held"
    assert "from a seed at" in repr(rep)
    assert replayed == run["live"] == run["truth"]


def test_a_last_frame_larger_than_the_ring_still_replays_to_the_live_state(
    tmp_path: Path,
) -> None:
    with rtnb.serve(port=0) as srv:
        srv.declare("fleet")
        conn = rtnb.connect(
            srv.url,
            token=srv.issue_token(tenant="acme", user="ana"),
            shared=False,
            limits=rtnb.Limits(flight_bytes=32 * 1024),
        )
        topic = conn.subscribe("fleet")
        wait_until(lambda: topic.freshness.status == "live")
        srv.publish_many("fleet", [("updated", f"e{i}", {"i": i}) for i in range(5)], tenant="acme")
        wait_until(lambda: len(topic.server_entities) == 5)
        big = "x" * 40_000  # one event frame over the 32 KiB ring
        srv.publish("fleet", "updated", {"i": 99, "pad": big}, tenant="acme", entity_id="e1")
        truth = srv.truth("fleet", tenant="acme")
        wait_until(lambda: topic.server_entities == truth)
        flight = conn.flight
        assert flight.frames_dropped == 1 and flight.nbytes <= 32 * 1024
        assert "1 too large to hold" in repr(flight)
        conn.log.to_parquet(tmp_path / "big.parquet")
        conn.close()
    rep = replay(EnvelopeLog.read_parquet(tmp_path / "big.parquet"), speed=None)
    handle = rep.subscribe("fleet")
    assert rep.wait(30)
    assert handle.server_entities == truth
    assert rep.source.recording is not None
    assert rep.source.recording.info["frames_dropped"] == 1


def test_a_flight_recorder_set_to_zero_is_off(tmp_path: Path) -> None:
    with rtnb.serve(port=0) as srv:
        srv.declare("fleet")
        conn = rtnb.connect(
            srv.url,
            token=srv.issue_token(tenant="acme", user="a"),
            shared=False,
            limits=rtnb.Limits(flight_seconds=0),
        )
        topic = conn.subscribe("fleet")
        wait_until(lambda: topic.freshness.status == "live")
        conn.log.to_parquet(tmp_path / "off.parquet")
        assert not conn.flight.enabled and conn.flight.nbytes == 0
        conn.close()
    log = EnvelopeLog.read_parquet(tmp_path / "off.parquet")
    assert log.recording is None
    with pytest.raises(ValueError, match="no recorded frames"):
        replay(log)
    with pytest.raises(ValueError, match="0 turns it off"):
        rtnb.Limits(flight_bytes=-1)


class _Stand:
    """The two things the flight recorder reads of a source, for a memory measurement
    without a socket (the tap is what the runtime thread calls per frame)."""

    def __init__(self) -> None:
        self.topic_states: dict[str, Any] = {}
        self.tap: Any = None

    def add_tap(self, tap: Any) -> Any:
        self.tap = tap
        return lambda: None

    def call(self, fn: Any, *, what: str) -> Any:
        return fn()


@pytest.mark.parametrize("size", [60, 600])
def test_memory_at_the_cap_is_bounded_by_the_cap(size: int) -> None:
    cap = 4 * 1024 * 1024
    stand = _Stand()
    tracemalloc.start()
    try:
        flight = FlightRecorder(stand, cap, 900)  # type: ignore[arg-type]
        flight.install()
        base = tracemalloc.get_traced_memory()[0]
        frames = 5 * cap // (size + ROW_OVERHEAD)
        for i in range(frames):  # every frame a distinct string, as received
            stand.tap(f'{{"op":"event","n":{i:09d}}}'.ljust(size), 1000.0 + i * 1e-4, "ws", 1)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert flight.frames_evicted > 0
    assert flight.nbytes <= cap
    assert held <= 1.1 * cap, f"{held:,} bytes held for a {cap:,}-byte cap"
    assert flight.nbytes >= cap * 0.8, "the ring fills up to its cap before evicting"
    rec = flight.recording()
    assert rec is not None and rec.info["seeded"]


class _Store:
    def __init__(self) -> None:
        self.entities: dict[str, Any] = {}
        self.sequences: dict[str, int] = {}


class _Orderer:
    gap_timeout = 1.0

    def __init__(self) -> None:
        self.seq: int | None = None

    def position(self) -> int | None:
        return self.seq


class _TopicModel:
    """The parts of a topic state a seed reads, applied by :meth:`feed` after the tap
    (as the session processes a frame after its taps saw it)."""

    ordering = "sequence"

    def __init__(self, name: str) -> None:
        self.name, self.store, self.orderer = name, _Store(), _Orderer()

    def feed(self, seq: int, entity: str, value: int) -> None:
        self.store.entities[entity] = {"v": value}
        self.store.sequences[entity] = seq
        self.orderer.seq = seq


def _replay_window(items: list[Any]) -> dict[str, Any]:
    """The state a replay of the window reaches: frames applied, seeds reset."""
    state: dict[str, Any] = {}
    for item in items:
        if len(item) == 4:
            msg = json.loads(item[0])
            state[msg["e"]] = {"v": msg["v"]}
        elif item[0] == "seed":
            snap = json.loads(bytes(item[4]))
            state = {e["entityId"]: e["state"] for e in snap["entities"]}
    return state


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cap=st.integers(min_value=2_000, max_value=40_000),
    frames=st.lists(
        st.tuples(
            st.integers(0, 30),  # entity
            st.sampled_from([10, 100, 1_000, 5_000, 50_000]),  # padding: some over the cap
            st.floats(0, 3),  # seconds since the previous frame
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_the_cap_holds_on_every_frame_and_the_window_replays_to_the_state(
    cap: int, frames: list[tuple[int, int, float]]
) -> None:
    topic = _TopicModel("fleet")
    stand = _Stand()
    stand.topic_states["fleet"] = topic
    flight = FlightRecorder(stand, cap, 60)  # type: ignore[arg-type]
    flight.install()
    now = time.time() - 1000
    for seq, (entity, pad, dt) in enumerate(frames, start=1):
        now += dt
        data = json.dumps({"e": f"e{entity}", "v": seq, "pad": "x" * pad})
        stand.tap(data, now, "ws", 1)
        assert flight.nbytes <= cap, repr(flight)
        topic.feed(seq, f"e{entity}", seq)
    items, _, skipped, total = flight._copy()  # skipped: past the age cap
    assert total == len(frames)
    held = sum(1 for item in items if len(item) == 4)
    assert held + skipped + flight.frames_evicted + flight.frames_dropped == len(frames)
    if flight._window_skipped:  # the window starts without the state: said so
        assert flight.seeds_skipped > 0 and items[0][0] == "topics"
    elif any(len(item) == 4 or item[0] == "seed" for item in items):
        assert _replay_window(items) == topic.store.entities


def _large_topic(entities: int) -> Any:
    from rtnb.core.pipeline import Pipeline

    ts = Pipeline().add_topic("fleet")
    ts.store.replace((f"veh-{i}", {"status": "ok", "speed": i % 90}, i) for i in range(entities))
    return ts


def _count_seeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import rtnb.client.flight as flight_module

    taken: list[int] = []

    class Counting(flight_module.Seed):
        def __init__(self, ts: Any) -> None:
            taken.append(1)
            super().__init__(ts)

    monkeypatch.setattr(flight_module, "Seed", Counting)
    return taken


def test_a_state_larger_than_a_segment_is_seeded_once_per_segment_not_per_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before issue 17 a state over a segment (cap / 16) re-seeded on every frame.
    taken = _count_seeds(monkeypatch)
    ts = _large_topic(6_000)  # ~200 KB of state; a segment of a 1 MiB cap is 64 KiB
    state = ts.store.nbytes
    stand = _Stand()
    stand.topic_states["fleet"] = ts
    cap = 1 << 20
    flight = FlightRecorder(stand, cap, 900)  # type: ignore[arg-type]
    flight.install()
    frame = '{"op":"event","pad":"' + "x" * 200 + '"}'
    received = 0
    for i in range(20_000):
        stand.tap(frame, 1000.0 + i * 1e-3, "ws", 1)
        received += len(frame) + ROW_OVERHEAD
        assert flight.nbytes <= cap
    # a seed is paid for by at least its own size in frames
    assert 1 <= len(taken) <= received // state + 1, (len(taken), received // state)
    assert flight.seeds_skipped == 0
    rec = flight.recording()
    assert rec is not None and rec.info["seeded"] and rec.info["seeds_skipped"] == []


def test_a_seed_that_cannot_be_afforded_is_skipped_and_said_in_the_recording(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rtnb.client.flight as flight_module

    taken = _count_seeds(monkeypatch)
    measures: list[int] = []
    exact = flight_module._exact_bytes

    def measure(store: Any) -> int:
        measures.append(exact(store))
        return measures[-1]

    monkeypatch.setattr(flight_module, "_exact_bytes", measure)
    ts = _large_topic(20_000)  # ~700 KB of state: over half of a 1 MiB cap
    stand = _Stand()
    stand.topic_states["fleet"] = ts
    flight = FlightRecorder(stand, 1 << 20, 900)  # type: ignore[arg-type]
    flight.install()
    frame = '{"op":"event","pad":"' + "x" * 200 + '"}'
    received = 0
    for i in range(20_000):
        stand.tap(frame, 1000.0 + i * 1e-3, "ws", 1)
        received += len(frame) + ROW_OVERHEAD
        assert flight.nbytes <= 1 << 20
    assert taken == [] and flight.seeds_skipped >= 10
    assert flight.frames_dropped == 0
    # each skip is decided on a measured size, measured again only once 3x the state's
    # size of frames came in (in between: that size plus the frames since)
    assert measures and len(measures) <= received // (3 * measures[0]) + 1, measures
    rec = flight.recording()
    assert rec is not None and rec.info["seeds_skipped"] == ["fleet"]


def test_a_small_state_behind_a_large_batch_is_seeded_and_the_window_replays_to_it(
    tmp_path: Path,
) -> None:
    # A batch frame is charged whole to the store's size bound (TopicStore.nbytes), so
    # after a 150 KB batch a 13 KB state reads as 160 KB until its next measure. The
    # seed's cost was read from that bound alone: ``fleet``'s seed was skipped though
    # it fits, and once its frames were evicted (``prices`` frames after them) a replay
    # of the file ended with ``fleet`` empty -- the chaos test above, one run in three.
    from rtnb.core.pipeline import Pipeline
    from rtnb.protocol import Batch, Subscribed, encode
    from tests.helpers import event, snapshot

    log = EnvelopeLog()
    pipeline = Pipeline(log)
    for name, ordering in TOPICS.items():
        pipeline.add_topic(name, ordering)
    stand = _Stand()
    stand.topic_states = pipeline.topics
    cap = 256 * 1024
    flight = FlightRecorder(stand, cap, 900)  # type: ignore[arg-type]
    flight.install()
    log.set_frame_source(flight.recording)
    frames = [encode(Subscribed(topic=name, replay="none")) for name in TOPICS]
    frames += [encode(snapshot(name, 0, {})) for name in TOPICS]
    last = dict.fromkeys(TOPICS, 0)
    for name in ("fleet", "prices", "prices", "prices"):  # ~150 KB each, 40 entities
        seqs = range(last[name] + 1, last[name] + 301)
        last[name] = seqs[-1]
        batch = [
            event(seq, topic=name, entity=f"e{seq % 40}", payload={"v": seq, "p": "x" * 300})
            for seq in seqs
        ]
        frames.append(encode(Batch(messages=batch)))
    now = 1000.0
    for frame in frames:  # the tap sees a frame before the pipeline applies it
        now += 0.01
        stand.tap(frame, now, "ws", 1)
        pipeline.feed(frame, now)
    fleet = pipeline.topics["fleet"].store
    assert len(fleet.entities) == 40
    assert fleet.nbytes > cap // 4 > len(json.dumps(fleet.entities)), "a loose bound"
    assert flight.frames_evicted > 0 and flight.nbytes <= cap
    # seeds are counted at their measured size, not the loose bound (the ring holds frames)
    seeds = [it[4] for seg in flight._segments for it in seg.items if it[0] == "seed"]
    assert seeds and all(seed.nbytes < 2 * len(json.dumps(seed.entities)) for seed in seeds)
    log.to_parquet(tmp_path / "batch.parquet")
    rep = replay(EnvelopeLog.read_parquet(tmp_path / "batch.parquet"), speed=None)
    handles = {name: rep.subscribe(name) for name in TOPICS}
    assert rep.wait(30)
    assert rep.seeded
    for name, handle in handles.items():
        assert handle.server_entities == pipeline.topics[name].store.entities, name
    assert rep.source.recording is not None
    assert rep.source.recording.info["seeds_skipped"] == [], "13 KB fits a 64 KiB seed budget"
    assert flight.seeds_skipped == 0
    rep.close()
