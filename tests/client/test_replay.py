"""rtnb.replay: a recording fed through the same pipeline reproduces the live session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pandas.testing import assert_frame_equal

from rtnb.client.replay import Replay, ReplayTopic, replay
from rtnb.client.topic import Topic
from rtnb.core.status import Status
from rtnb.protocol.errors import LocalProtocolError
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.recorded import Recording, frames_table
from tests.chaos_run import TOPICS, ChaosRun
from tests.conftest import wait_until
from tests.helpers import send_from_browser


@pytest.fixture(scope="module")
def recorded(chaos_run: ChaosRun) -> EnvelopeLog:
    return EnvelopeLog.read_parquet(chaos_run.path)


def _play_to_end(log: EnvelopeLog, **kw: Any) -> tuple[Replay, dict[str, Topic]]:
    rep = replay(log, **kw)
    topics = {name: rep.subscribe(name) for name in TOPICS}
    assert rep.wait(60), rep
    return rep, topics


def test_replaying_a_recording_reproduces_the_live_final_states_and_outcome_counts(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    rep, topics = _play_to_end(recorded, speed=None)
    for name, topic in topics.items():
        assert topic.server_entities == chaos_run.live_states[name], name
    assert rep.log.counts == chaos_run.live_counts
    assert rep.log.counts["replayed"] > 0 and rep.log.counts["duplicate"] > 0


def test_the_replayed_log_equals_the_live_log_row_for_row(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    rep, _ = _play_to_end(recorded, speed=None)
    assert_frame_equal(rep.log.envelopes, chaos_run.live_envelopes, check_exact=True)
    for table in ("states", "mutations", "heartbeats"):
        assert_frame_equal(getattr(rep.log, table), getattr(recorded, table), check_exact=True)
    assert rep.log.summary() == chaos_run.live_summary


def test_a_replay_at_a_finite_speed_also_ends_in_the_live_state(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    rep, topics = _play_to_end(recorded, speed=500.0)
    assert rep.done and rep.progress == 1.0
    assert topics["fleet"].server_entities == chaos_run.live_states["fleet"]
    assert rep.position == rep.end


def test_replay_topics_are_real_topics_that_widgets_read_like_live_ones(
    recorded: EnvelopeLog,
) -> None:
    rep = replay(recorded, speed=None, paused=True)
    topic = rep.subscribe("fleet")
    assert isinstance(topic, Topic) and isinstance(topic, ReplayTopic)
    assert topic.connection is rep and topic.connection.log is rep.log
    changes = rep.call(topic._state.store.open_changes, what="test")
    seen: list[Status] = []
    rep.on_state(lambda st: seen.append(st.status))
    rep.resume()
    assert rep.wait(60)
    reset, changed = rep.call(changes.take, what="test")
    assert reset and changed == set(topic.server_entities)
    assert seen == [Status(s) for s in recorded.states["status"].astype(str)]
    assert topic.freshness.connection == "closed" and rep.state.status is Status.CLOSED
    assert not rep._runtime.in_runtime_thread()
    assert topic.df.index.name == "entity_id" and len(topic.df) == len(topic.entities)


def test_on_event_callbacks_receive_every_applied_event(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    rep = replay(recorded, speed=None, paused=True)
    topic = rep.subscribe("incidents")
    got: list[str] = []
    topic.on_event(lambda ev, outcome: got.append(outcome))
    rep.resume()
    assert rep.wait(60)
    live = chaos_run.live_envelopes
    applied = live[(live["topic"] == "incidents") & live["outcome"].isin(["applied", "replayed"])]
    assert sorted(got) == sorted(applied["outcome"].astype(str))


def test_pause_holds_the_position_and_resume_goes_on(recorded: EnvelopeLog) -> None:
    rep = replay(recorded, speed=20.0, paused=True)
    assert rep.progress == 0.0 and rep.paused
    rep.resume()
    wait_until(lambda: rep.progress > 0.05, timeout=30)
    rep.pause()
    held, position = rep.progress, rep.position_s
    for _ in range(20):  # let the runtime loop turn: nothing moves while paused
        rep.call(lambda: None, what="test")
    assert (rep.progress, rep.position_s) == (held, position)
    rep.speed = None
    rep.resume()
    assert rep.wait(60)


def test_seek_rebuilds_the_state_at_that_instant_forwards_and_backwards(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    live = chaos_run.live_envelopes
    mid = live["received_at"].iloc[len(live) // 2]
    rep = replay(recorded, speed=None, paused=True)
    fleet = rep.subscribe("fleet")
    rep.seek(mid)
    assert rep.position_s == pytest.approx(mid.timestamp(), abs=1e-6) and rep.paused
    at_mid = fleet.server_entities
    assert len(rep.log) == int((live["received_at"] <= mid).sum())
    rep.seek(rep.end)
    assert fleet.server_entities == chaos_run.live_states["fleet"]
    assert rep.log.counts == chaos_run.live_counts
    rep.seek(mid.isoformat())
    assert fleet.server_entities == at_mid
    assert len(rep.log) == int((live["received_at"] <= mid).sum())


def test_freshness_of_a_replay_topic_is_measured_on_replay_time(recorded: EnvelopeLog) -> None:
    rep = replay(recorded, speed=None, paused=True)
    topic = rep.subscribe("prices")
    rep.seek(recorded.envelopes["received_at"].iloc[300])
    fresh = topic.freshness
    assert fresh.last_event_at is not None and fresh.age_s is not None
    assert fresh.age_s == pytest.approx(rep.position_s - fresh.last_event_at.timestamp(), abs=1e-6)
    assert fresh.status in ("live", "replaying", "stale")


def test_a_replay_is_read_only(recorded: EnvelopeLog) -> None:
    rep = replay(recorded, speed=None, paused=True)
    topic = rep.subscribe("incidents")
    with pytest.raises(LocalProtocolError, match="read-only"):
        topic.mutate("inc-1", {"status": "ack"})


def test_subscribing_to_a_topic_the_recording_lacks_names_the_recorded_ones(
    recorded: EnvelopeLog,
) -> None:
    rep = replay(recorded, speed=None, paused=True)
    with pytest.raises(ValueError, match="not in this recording; it has fleet, incidents, prices"):
        rep.subscribe("audit")
    with pytest.raises(LocalProtocolError, match="recorded with ordering 'entity'"):
        rep.subscribe("prices", ordering="sequence")
    assert rep.recorded_topics == TOPICS


def test_a_log_without_recorded_frames_cannot_be_replayed_and_says_how_to_record(
    tmp_path: Path,
) -> None:
    EnvelopeLog().to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match=r"conn.record\(path\)"):
        replay(EnvelopeLog.read_parquet(tmp_path / "plain.parquet"))


def test_a_state_row_naming_an_unknown_status_is_refused_up_front(tmp_path: Path) -> None:
    topics = {"items": {"ordering": "sequence", "gap_timeout": 1.0}}
    snap = {"op": "snapshot", "topic": "items", "entities": [], "token": "x" * 12, "sequence": 0}
    rows = [
        (1000.0, "topics", "websocket", 1, json.dumps(topics).encode(), True),
        (1000.0, "frame", "websocket", 1, json.dumps(snap).encode(), True),
    ]
    recording = Recording(frames_table(rows), {"payloads": True, "started_at": 1000.0})
    log = EnvelopeLog()
    log.append_state(1000.0, "connecting", "idle", "", 1, 0.0)
    log.append_state(1000.0, "flying", "connecting", "", 1, 0.0)  # damaged or newer
    log.set_frame_source(lambda: recording)
    log.to_parquet(tmp_path / "odd.parquet")
    with pytest.raises(ValueError, match="row 1 of the log's states names status 'flying'"):
        replay(EnvelopeLog.read_parquet(tmp_path / "odd.parquet"))


@pytest.mark.parametrize("speed", [0, -1.0, "fast"])
def test_speed_must_be_a_positive_number_or_none(recorded: EnvelopeLog, speed: Any) -> None:
    with pytest.raises(ValueError, match="speed must be a positive number or None"):
        replay(recorded, speed=speed)


def test_the_repr_tells_position_and_progress_and_no_secret(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    rep = replay(recorded, speed=None, paused=True)
    text = repr(rep) + repr(rep.subscribe("fleet")) + str(rep.state)
    assert "paused" in text and "0%" in text
    assert not [t for t in chaos_run.tokens if t in text]


def test_the_table_and_freshness_widgets_run_on_a_replay_topic(
    chaos_run: ChaosRun, recorded: EnvelopeLog
) -> None:
    from rtnb.widgets import Freshness, StreamTable

    rep = replay(recorded, speed=None, paused=True)
    topic = rep.subscribe("fleet")
    table, pill = StreamTable(topic), Freshness(topic)
    try:
        for widget in (table, pill):
            send_from_browser(widget, {"t": "hello"})  # what a rendered view sends
        rep.resume()
        assert rep.wait(60)
        wait_until(lambda: table.messages_sent >= 1 and pill.messages_sent >= 1, timeout=10)
        assert topic.server_entities == chaos_run.live_states["fleet"]
    finally:
        table.close()
        pill.close()
