"""ReplayControls in the kernel: its messages drive the replay (the browser side is in
test_widget_replay_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtnb
from rtnb.client.replay import SLICE_ROWS
from rtnb.telemetry import EnvelopeLog
from tests.conftest import wait_until
from tests.widgets.test_widget_replay_browser import STEPS, T0, _write_recording, expected_n


@pytest.fixture
def rep(tmp_path: Path) -> rtnb.Replay:
    _write_recording(tmp_path / "rec.parquet")
    return rtnb.replay(EnvelopeLog.read_parquet(tmp_path / "rec.parquet"), speed=None, paused=True)


def test_seek_play_pause_and_speed_messages_drive_the_replay(rep: rtnb.Replay) -> None:
    items = rep.subscribe("items")
    ctl = rtnb.ReplayControls(rep)
    try:
        assert (ctl.start, ctl.end) == (T0, T0 + STEPS)
        assert not ctl.playing and not ctl.seeded and ctl.incidents == []
        for at in (T0 + 150.5, T0 + 42.0, T0 + 199.0, T0 + 3.2):  # forwards and backwards
            ctl._on_message({"t": "seek", "at": at})  # runs in the background
            wait_until(
                lambda at=at: ctl.seeking == -1 and ctl.position == pytest.approx(at, abs=1e-3)
            )
            got = {eid: s["n"] for eid, s in items.server_entities.items()}
            want = {f"e{e}": expected_n(at, e) for e in range(5) if expected_n(at, e) > 0}
            assert got == want, f"state at T0+{at - T0:g}"
        ctl._on_message({"t": "seek", "at": float("nan")})  # ignored, not an error
        ctl._on_message({"t": "speed", "speed": 60})
        assert rep.speed == 60 and ctl.speed == 60
        ctl._on_message({"t": "play"})
        assert ctl.playing and not rep.paused
        ctl._on_message({"t": "pause"})
        assert not ctl.playing and rep.paused
        assert "ReplayControls" in repr(ctl)
    finally:
        ctl.close()
        rep.close()


def test_seeks_asked_while_one_runs_end_at_the_newest(rep: rtnb.Replay) -> None:
    items = rep.subscribe("items")
    ctl = rtnb.ReplayControls(rep)
    try:
        targets = [T0 + t for t in (190.0, 20.0, 150.0, 75.5, 120.0, 60.25)]
        for at in targets:  # a drag's worth of releases, faster than seeks finish
            ctl._on_message({"t": "seek", "at": at})
        last = targets[-1]
        wait_until(lambda: ctl.seeking == -1 and ctl.position == pytest.approx(last, abs=1e-3))
        got = {eid: s["n"] for eid, s in items.server_entities.items()}
        assert got == {f"e{e}": expected_n(last, e) for e in range(5)}
    finally:
        ctl.close()
        rep.close()


def test_seek_progress_rises_while_a_long_seek_runs(tmp_path: Path) -> None:
    _write_recording(tmp_path / "long.parquet", steps=12 * SLICE_ROWS)
    rep = rtnb.replay(EnvelopeLog.read_parquet(tmp_path / "long.parquet"), speed=None, paused=True)
    seen: list[float | None] = []

    def sample() -> None:  # on the runtime loop, between the seek's slices
        seen.append(rep.seek_progress)
        if not future.done():
            rep.loop.call_soon(sample)

    try:
        assert rep.seek_progress is None
        future = rep.start_seek(T0 + 12 * SLICE_ROWS)
        rep.loop.call_soon_threadsafe(sample)
        future.result(60)
        assert rep.seek_progress is None
        during = [p for p in seen if p is not None]
        assert len(during) >= 5, seen
        assert all(0.0 <= p <= 1.0 for p in during)
        assert during == sorted(during) and during[-1] > during[0]
    finally:
        rep.close()
