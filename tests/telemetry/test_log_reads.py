"""The log's public reads: ``snapshot``, ``tail`` and ``version`` (what charts,
widgets and the recorder use instead of the rings)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rtnb.telemetry import EnvelopeLog


def test_version_changes_with_every_append_before_any_commit() -> None:
    log = EnvelopeLog()
    before = log.version
    assert before == (0, 0, 0, 0)
    log.append_heartbeat(1.0, 2.0, 3.0)  # pending, not committed yet
    after = log.version
    assert after != before and sum(after) == 1
    assert log.version == after  # reading does not change it


def test_snapshot_holds_only_the_columns_asked_for() -> None:
    log = EnvelopeLog()
    for i in range(5):
        log.append_heartbeat(float(i), 10.0 + i, 0.5)
    snap = log.snapshot("heartbeats", ("at",))
    assert set(snap.columns) == {"at"}
    assert (snap.total, snap.held, snap.dropped) == (5, 5, 0)
    assert sorted(snap.columns["at"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(log.snapshot("heartbeats").columns) >= {"at", "rtt_ms", "server_lag_ms"}


@given(first=st.integers(0, 40), more=st.integers(0, 40), capacity=st.integers(1, 30))
def test_tail_returns_exactly_the_rows_appended_since_and_still_held(
    first: int, more: int, capacity: int
) -> None:
    log = EnvelopeLog(heartbeat_capacity=capacity)
    for i in range(first):
        log.append_heartbeat(float(i), 0.0, 0.0)
    since = log.snapshot("heartbeats", ()).total
    for i in range(first, first + more):
        log.append_heartbeat(float(i), 0.0, 0.0)
    tail = log.tail("heartbeats", since)
    kept = min(more, capacity)
    assert tail.held == kept
    ats = list(tail.columns["at"])
    assert sorted(ats) == [float(i) for i in range(first + more - kept, first + more)]
