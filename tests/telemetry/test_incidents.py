"""log.incidents(): degraded periods, and the pure core that finds them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.status import OUTCOME_CODES, Outcome, Status
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.incidents import COLUMNS, DEGRADED, ENDINGS, periods
from tests.chaos_run import ChaosRun

STATUSES = [s.value for s in Status]


@pytest.mark.slow
@settings(max_examples=500)
@given(st.lists(st.sampled_from(STATUSES), max_size=60))
def test_periods_cover_every_degraded_state_once_and_end_where_the_connection_recovers(
    statuses: list[str],
) -> None:
    found = periods(statuses)
    covered: set[int] = set()
    previous_last = -1
    for p in found:
        assert p.first > previous_last, "periods are ordered and disjoint"
        assert statuses[p.first] in DEGRADED
        last = len(statuses) - 1 if p.last is None else p.last
        inside = statuses[p.first + 1 : last] if p.last is not None else statuses[p.first + 1 :]
        assert not set(inside) & set(ENDINGS), "nothing inside a period ends it"
        if p.last is None:
            assert p.outcome == "ongoing" and p is found[-1]
        else:
            assert ENDINGS[statuses[p.last]] == p.outcome
        span = statuses[p.first : last + 1]
        assert p.attempts == span.count(Status.RECONNECTING.value)
        covered.update(range(p.first, last + 1))
        previous_last = last
    degraded = {i for i, s in enumerate(statuses) if s in DEGRADED}
    assert degraded <= covered


def _log_with_two_incidents() -> EnvelopeLog:
    log = EnvelopeLog()
    steps = [
        (100.0, "subscribed", "authenticated", "up"),
        (110.0, "degraded", "subscribed", "no heartbeat for 10.0 s"),
        (110.1, "reconnecting", "degraded", "retry 1"),
        (112.0, "connecting", "reconnecting", "attempt 1"),
        (112.5, "reconnecting", "connecting", "refused"),
        (114.0, "connecting", "reconnecting", "attempt 2"),
        (114.2, "subscribed", "connecting", "back"),
        (130.0, "degraded", "subscribed", "transport closed (code 1012)"),
    ]
    last = 99.0
    for at, status, previous, reason in steps:
        log.append_state(at, status, previous, reason, 0, at - last)
        last = at
    replayed, lost = OUTCOME_CODES[Outcome.REPLAYED], OUTCOME_CODES[Outcome.GAP_UNRECOVERABLE]
    for i, (t, code) in enumerate(
        [
            (105.0, replayed),
            (114.3, replayed),
            (114.4, replayed),
            (118.9, lost),
            (125.0, replayed),
            (131.0, replayed),
        ]
    ):
        log.append_envelope(t, t - 1, "a", "x", f"e{i}", i, "k", code, "websocket", 0, 10)
    log.append_envelope(140.0, 139.9, "a", "x", "late", 99, "k", 0, "websocket", 0, 10)
    return log


def test_incidents_have_start_end_reason_attempts_and_the_events_they_cost() -> None:
    frame = _log_with_two_incidents().incidents()
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 2
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["start"] == pd.Timestamp(110.0, unit="s", tz="UTC")
    assert first["end"] == pd.Timestamp(114.2, unit="s", tz="UTC")
    assert math.isclose(first["duration_s"], 4.2)
    assert (first["outcome"], first["reason"], first["attempts"]) == (
        "recovered",
        "no heartbeat for 10.0 s",
        2,
    )
    # replayed within [110, 114.2 + 5): 114.3 and 114.4; lost: 118.9
    assert (first["events_replayed"], first["events_unrecoverable"], first["events_missed"]) == (
        2,
        1,
        3,
    )
    assert second["outcome"] == "ongoing" and pd.isna(second["end"])
    assert math.isclose(second["duration_s"], 10.0), "an ongoing incident runs to the newest time"
    assert second["events_replayed"] == 1


def test_a_shorter_recovery_window_attributes_fewer_events() -> None:
    frame = _log_with_two_incidents().incidents(recovery_window=0.15)
    assert frame.iloc[0]["events_replayed"] == 1


def test_the_chaos_run_has_one_incident_per_fault_and_they_all_recovered(
    chaos_run: ChaosRun,
) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    frame = log.incidents()
    assert len(frame) >= 3
    assert set(frame["outcome"]) == {"recovered"}
    assert frame["attempts"].sum() == chaos_run.live_summary["reconnects"]
    assert (frame["end"] > frame["start"]).all()
    assert frame["events_replayed"].sum() <= chaos_run.live_counts["replayed"]
    assert np.all(frame["duration_s"] > 0)


def test_an_empty_log_has_no_incidents_but_the_same_columns() -> None:
    frame = EnvelopeLog().incidents()
    assert frame.empty and list(frame.columns) == list(COLUMNS)


# -- one definition of degraded time ---------------------------------------------------

_STATUSES = [s.value for s in Status if s is not Status.IDLE]


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(_STATUSES), st.floats(0.0, 30.0, allow_nan=False)),
        max_size=40,
    ),
    tail=st.floats(0.0, 30.0, allow_nan=False),
    legacy=st.booleans(),
)
def test_summary_degraded_seconds_equal_the_sum_of_incident_durations(
    steps: list[tuple[str, float]], tail: float, legacy: bool
) -> None:
    log = EnvelopeLog()
    t, previous = 1_700_000_000.0, "idle"
    for status, gap in steps:
        t += gap
        log.append_state(t, status, previous, "step", 1, gap)
        previous = status
    log.append_heartbeat(t + tail, 1.0, 0.5)  # the newest time in the log
    if legacy:  # a file written before the incident tally: recomputed from the rows
        tally = log._states.tally
        tally.restore({"entries": tally.state["entries"], "seconds": tally.state["seconds"]})
    summary = log.summary()
    found = log.incidents()
    assert math.isclose(
        summary["degraded_s"], float(found["duration_s"].sum()), rel_tol=1e-9, abs_tol=1e-6
    )
    assert summary["degraded_ongoing"] == bool((found["outcome"] == "ongoing").any())


def test_time_in_status_groups_by_the_state_itself() -> None:
    log = EnvelopeLog()
    t0 = 1_700_000_000.0
    for at, status, previous in [
        (0.0, "connecting", "idle"),
        (1.0, "subscribed", "connecting"),
        (11.0, "degraded", "subscribed"),
        (11.5, "reconnecting", "degraded"),
        (14.5, "connecting", "reconnecting"),
        (15.0, "subscribed", "connecting"),
    ]:
        log.append_state(t0 + at, status, previous, None, 1, math.nan)
    per_state = log.states.groupby("status", observed=True)["time_in_status_s"].sum()
    assert per_state["subscribed"] == 10.0  # the current stretch is not over: NaN, skipped
    assert per_state["reconnecting"] == 3.0
    assert per_state["connecting"] == 1.5
    assert log.summary()["degraded_s"] == 4.0 == log.incidents()["duration_s"].sum()
