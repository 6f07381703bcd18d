"""A ``gap_unrecoverable`` row is a range (``count`` sequences): O(1) whatever its size.

Summaries and incidents count sequences, not rows; files written before the
``count`` column existed still read, as one sequence per row (what they meant).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow.parquet as pq  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.core.status import OUTCOME_CODES, Outcome
from rtnb.telemetry import EnvelopeLog

T0 = 1_760_000_000.0
GAP = OUTCOME_CODES[Outcome.GAP_UNRECOVERABLE]
APPLIED = OUTCOME_CODES[Outcome.APPLIED]
SHIPPED = Path(__file__).parents[2] / "notebooks" / "data" / "chaos_run.parquet"


def gap(log: EnvelopeLog, at: float, first: int, count: int) -> None:
    log.append_envelope(
        at, math.nan, "incidents", "", None, first, None, GAP, "websocket", 1, 0, None, count
    )


def applied(log: EnvelopeLog, at: float, seq: int) -> None:
    log.append_envelope(at, at, "incidents", "x", f"e{seq}", seq, "a", APPLIED, "websocket", 1, 10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2**62), min_size=1, max_size=20))
def test_summary_counts_sequences_not_rows(sizes: list[int]) -> None:
    log = EnvelopeLog(envelope_capacity=4)  # overflow must not change the figures
    for i, size in enumerate(sizes):
        applied(log, T0 + i, i)
        gap(log, T0 + i + 0.5, 1000 * i, size)
    summary = log.summary()
    assert summary["replay"]["gap_unrecoverable"] == sum(sizes) == log.unrecoverable
    assert summary["outcomes"]["gap_unrecoverable"] == len(sizes)  # rows


def test_the_count_column_round_trips_through_parquet(tmp_path: Path) -> None:
    log = EnvelopeLog()
    applied(log, T0, 1)
    gap(log, T0 + 1, 2, 10_000_000)
    gap(log, T0 + 2, 10_000_002, 2**62)
    path = tmp_path / "log.parquet"
    log.to_parquet(path)
    back = EnvelopeLog.read_parquet(path)
    assert list(back.envelopes["count"]) == [1, 10_000_000, 2**62]
    assert back.summary()["replay"]["gap_unrecoverable"] == 10_000_000 + 2**62


def test_a_file_without_the_count_column_reads_as_one_sequence_per_row(tmp_path: Path) -> None:
    log = EnvelopeLog()
    for i in range(3):
        applied(log, T0 + i, i)
        gap(log, T0 + i + 0.5, 100 + i, 1)  # old layout: one row per sequence
    new, old = tmp_path / "new.parquet", tmp_path / "old.parquet"
    log.to_parquet(new)
    table = pq.read_table(new)
    meta = dict(table.schema.metadata)
    info = json.loads(meta[b"rtnb.log"])
    info["tallies"]["envelopes"].pop("gap_sequences")  # old tallies had no such key
    meta[b"rtnb.log"] = json.dumps(info).encode()
    table = table.drop_columns(["count"])
    pq.write_table(table.replace_schema_metadata(meta), old)
    assert "count" not in pq.read_schema(old).names

    back = EnvelopeLog.read_parquet(old)
    assert list(back.envelopes["count"]) == [1] * 6
    assert back.summary()["replay"]["gap_unrecoverable"] == 3 == back.unrecoverable


def test_the_shipped_recording_still_reads() -> None:
    log = EnvelopeLog.read_parquet(SHIPPED)
    env = log.envelopes
    assert (env["count"] == 1).all()
    rows = int((env["outcome"] == "gap_unrecoverable").sum())
    assert log.summary()["replay"]["gap_unrecoverable"] >= rows


def test_incidents_count_the_sequences_of_a_gap_range() -> None:
    log = EnvelopeLog()
    log.append_state(T0, "subscribed", "authenticated", "ok", 1, 0.0)
    log.append_state(T0 + 1, "degraded", "subscribed", "no heartbeat", 1, 1.0)
    log.append_state(T0 + 2, "reconnecting", "degraded", "lost", 2, 1.0)
    log.append_state(T0 + 3, "connecting", "reconnecting", "retry", 2, 1.0)
    log.append_state(T0 + 4, "subscribed", "connecting", "ok", 2, 1.0)
    gap(log, T0 + 4.5, 10, 5_000_000)
    inc = log.incidents()
    assert list(inc["events_unrecoverable"]) == [5_000_000]
