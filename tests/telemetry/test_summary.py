"""EnvelopeLog.summary(): headline figures against a hand-built log."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from rtnb.core.status import OUTCOME_CODES, Outcome
from rtnb.telemetry import EnvelopeLog

T0 = 1_760_000_000.0


def add(log: EnvelopeLog, i: int, lag_s: float, outcome: Outcome, **changes: Any) -> None:
    args: dict[str, Any] = {
        "received_at": T0 + i,
        "occurred_at": T0 + i - lag_s,
        "topic": "incidents",
        "type": "incident.updated",
        "id": f"evt-{i}",
        "sequence": i,
        "entity_id": "inc-1",
        "outcome": OUTCOME_CODES[outcome],
        "transport": "websocket",
        "attempt": 1,
        "nbytes": 100,
        "error": None,
    }
    args.update(changes)
    log.append_envelope(*args.values())


def plain_json(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json(v) for v in value)
    return value is None or type(value) in (int, float, str, bool)


def hand_built() -> EnvelopeLog:
    log = EnvelopeLog()
    lags = [0.001 * (i % 17) + 0.0003 * i for i in range(40)]
    for i, lag in enumerate(lags):
        outcome = Outcome.APPLIED
        if i in (5, 6, 7):
            outcome = Outcome.REPLAYED
        elif i == 9:
            outcome = Outcome.GAP_UNRECOVERABLE
        elif i == 11:
            outcome = Outcome.DUPLICATE
        add(log, i, lag, outcome)
    add(log, 40, math.nan, Outcome.INVALID, occurred_at=math.nan, error="$: not JSON")
    # idle -> connecting -> subscribed -> degraded -> reconnecting -> connecting -> subscribed
    #   -> degraded -> reconnecting (still reconnecting at the end)
    transitions = [
        (0.0, "connecting", "idle", 0.0),
        (0.5, "subscribed", "connecting", 0.5),
        (10.5, "degraded", "subscribed", 10.0),
        (12.5, "reconnecting", "degraded", 2.0),
        (14.0, "connecting", "reconnecting", 1.5),
        (14.3, "subscribed", "connecting", 0.3),
        (30.0, "degraded", "subscribed", 15.7),
        (30.5, "reconnecting", "degraded", 0.5),
    ]
    for k, (at, status, previous, duration) in enumerate(transitions):
        log.append_state(T0 + at, status, previous, f"step {k}", 1 + k // 4, duration)
    for k, resolution in enumerate(["confirmed", "confirmed", "rejected", "timed_out"]):
        log.append_mutation(f"m{k}", "incidents", "inc-1", T0, T0 + 0.1, resolution, 100.0, False)
    log.append_heartbeat(T0 + 42.0, 3.0, 1.0)  # the newest time in the log
    return log


def test_summary_figures_match_a_hand_built_log() -> None:
    log = hand_built()
    summary = log.summary()

    lags = np.array(
        [
            ((T0 + i) - (T0 + i - lag)) * 1000.0
            for i, lag in enumerate([0.001 * (i % 17) + 0.0003 * i for i in range(40)])
        ]
    )
    p50, p95, p99 = np.percentile(lags, [50, 95, 99])
    assert summary["lag_ms"] == {"p50": p50, "p95": p95, "p99": p99, "count": 40}

    assert summary["outcomes"] == {
        "applied": 35,
        "duplicate": 1,
        "stale": 0,
        "buffered": 0,
        "replayed": 3,
        "invalid": 1,
        "unexpected_topic": 0,
        "gap_unrecoverable": 1,
    }
    assert summary["replay"] == {"replayed": 3, "gap_unrecoverable": 1}
    assert summary["validation_failures"] == 1
    assert summary["reconnects"] == 2
    # One definition with incidents(): from leaving live until subscribed again.
    # Finished: 10.5 -> 14.3 (degraded, reconnecting *and* connecting); ongoing:
    # since T0 + 30.0 until the newest time recorded, the heartbeat at T0 + 42.
    assert summary["degraded_s"] == pytest.approx(3.8 + 12.0)
    assert summary["degraded_s"] == pytest.approx(log.incidents()["duration_s"].sum())
    assert summary["degraded_ongoing"] is True
    assert summary["mutations"] == {"confirmed": 2, "rejected": 1, "timed_out": 1}
    assert summary["dropped"] == {"envelopes": 0, "states": 0, "mutations": 0, "heartbeats": 0}
    assert summary["envelopes_total"] == summary["envelopes_held"] == 41
    assert plain_json(summary)
    json.dumps(summary)


def test_a_healthy_last_state_adds_no_ongoing_degraded_time() -> None:
    log = EnvelopeLog()
    log.append_state(T0, "degraded", "subscribed", "missed heartbeats", 1, 60.0)
    log.append_state(T0 + 4, "subscribed", "degraded", "recovered", 1, 4.0)
    add(log, 100, 0.01, Outcome.APPLIED)
    summary = log.summary()
    assert summary["degraded_s"] == 4.0
    assert summary["degraded_ongoing"] is False
    assert summary["reconnects"] == 0


def test_counts_and_reconnects_stay_honest_after_overflow() -> None:
    log = EnvelopeLog(envelope_capacity=5, state_capacity=2)
    for i in range(20):
        add(log, i, 0.002, Outcome.APPLIED if i % 4 else Outcome.DUPLICATE)
    for k in range(6):
        log.append_state(T0 + 2 * k, "reconnecting", "degraded", None, k, 1.0)
        log.append_state(T0 + 2 * k + 1, "connecting", "reconnecting", None, k, 1.0)
    summary = log.summary()
    assert summary["outcomes"]["applied"] == 15
    assert summary["outcomes"]["duplicate"] == 5
    assert summary["lag_ms"]["count"] == 5
    assert summary["envelopes_total"] == 20
    assert summary["envelopes_held"] == 5
    assert summary["dropped"]["envelopes"] == 15
    assert summary["dropped"]["states"] == 10
    assert summary["reconnects"] == 6
    # The incident began at T0 (a row long overwritten) and is still open: it
    # runs to the newest time in the log, the envelope received at T0 + 19.
    assert summary["degraded_s"] == 19.0


def test_an_empty_log_summarises_to_zeros_and_no_percentiles() -> None:
    summary = EnvelopeLog().summary()
    assert summary["lag_ms"] == {"p50": None, "p95": None, "p99": None, "count": 0}
    assert set(summary["outcomes"].values()) == {0}
    assert summary["degraded_s"] == 0.0
    assert summary["mutations"] == {}
    assert plain_json(summary)
