"""ReplayControls in the kernel: its messages drive the replay (the browser side is in
test_widget_replay_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtnb
from rtnb.telemetry import EnvelopeLog
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
            ctl._on_message({"t": "seek", "at": at})
            assert ctl.position == pytest.approx(at)
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
