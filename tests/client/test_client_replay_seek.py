"""Seeking a replay: checkpoints restore the state, and the state after a seek is the
state after playing from the start to that instant (property test)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.replay_seek import synthetic_recording
from rtnb.client.replay_player import Player
from rtnb.client.replay_timeline import Timeline
from rtnb.telemetry import EnvelopeLog

EVENTS = 3_000
#: a dedupe memory smaller than the recording, so it evicts between checkpoints
DEDUPE = 500


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> EnvelopeLog:
    path = synthetic_recording(EVENTS, tmp_path_factory.mktemp("seek") / "rec.parquet")
    return EnvelopeLog.read_parquet(path)


def _player(log: EnvelopeLog, every: int) -> Player:
    assert log.recording is not None
    player = Player(
        Timeline(log, log.recording),
        EnvelopeLog(envelope_capacity=4 * EVENTS),
        dedupe_entries=DEDUPE,
    )
    player.checkpoint_rows = every
    return player


def _state(player: Player) -> dict[str, Any]:
    topics = {
        name: (
            dict(ts.store.entities),
            dict(ts.store.sequences),
            ts.status,
            ts.orderer.position(),
            ts.applied,
            ts.gaps,
        )
        for name, ts in player.topic_states.items()
    }
    log = player.log
    return {
        "i": player.i,
        "topics": topics,
        "counts": log.counts,
        "envelopes": log.envelopes.to_dict("list"),
        "deduped": player.pipeline.deduper.newest(DEDUPE),
        "evicted": player.pipeline.deduper.evicted,
    }


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.floats(min_value=-0.1, max_value=1.1), min_size=1, max_size=6))
def test_the_state_after_a_seek_is_the_state_after_playing_to_there(
    recording: EnvelopeLog, fractions: list[float]
) -> None:
    seeking = _player(recording, every=400)
    start, end = seeking.timeline.start, seeking.timeline.end
    seeking.seek_to(end)  # one pass: checkpoints everywhere, the log kept for forward jumps
    assert len(seeking.checkpoints) >= 5
    kept = len(seeking.checkpoints)
    for fraction in fractions:
        target = start + fraction * (end - start)
        seeking.seek_to(target)
        # the checkpoints served the seek (a failed restore clears them and starts over)
        assert len(seeking.checkpoints) == kept and seeking._full is not None
        straight = _player(recording, every=0)
        straight.advance(target, 1 << 30)
        assert _state(seeking) == _state(straight), f"seek to {fraction:.3f} of the recording"


def test_a_backward_seek_before_the_end_was_reached_truncates_the_log(
    recording: EnvelopeLog,
) -> None:
    player = _player(recording, every=400)
    start, end = player.timeline.start, player.timeline.end
    player.seek_to(start + 0.7 * (end - start))
    assert player.checkpoints and player._full is None
    target = start + 0.3 * (end - start)
    player.seek_to(target)
    straight = _player(recording, every=0)
    straight.advance(target, 1 << 30)
    assert _state(player) == _state(straight)


@given(st.lists(st.text(alphabet="aé\x00", max_size=4), max_size=8))
def test_checkpoint_ids_pack_and_unpack_to_themselves(ids: list[str]) -> None:
    from rtnb.client.replay_player import _pack, _unpack

    assert _unpack(_pack(ids), len(ids)) == ids
