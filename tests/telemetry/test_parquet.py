"""EnvelopeLog.to_parquet / read_parquet: one real file, exact round trip."""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from rtnb.core.status import OUTCOME_CODES, OUTCOMES_BY_CODE, Outcome
from rtnb.telemetry import SCHEMA_VERSION, EnvelopeLog, TelemetryFileError

T0 = 1_760_000_000.0
TABLES = ("envelopes", "states", "mutations", "heartbeats")


def envelope(i: int, **changes: Any) -> tuple[Any, ...]:
    args: dict[str, Any] = {
        "received_at": T0 + i * 0.001,
        "occurred_at": T0 + i * 0.001 - 0.004,
        "topic": ("incidents", "fleet")[i % 2],
        "type": f"t{i % 5}.updated",
        "id": f"evt-{i}",
        "sequence": i,
        "entity_id": f"ent-{i % 7}",
        "outcome": i % len(OUTCOMES_BY_CODE),
        "transport": "websocket",
        "attempt": 1,
        "nbytes": 200 + i,
        "error": None,
    }
    args.update(changes)
    return tuple(args.values())


def full_log(envelopes: int = 50, capacity: int = 1_000) -> EnvelopeLog:
    """A log with every table filled, NaNs, Nones and invalid rows included."""
    log = EnvelopeLog(
        envelope_capacity=capacity, state_capacity=4, mutation_capacity=3, heartbeat_capacity=5
    )
    for i in range(envelopes):
        if i % 10 == 3:
            log.append_envelope(
                *envelope(
                    i,
                    occurred_at=math.nan,
                    sequence=-1,
                    entity_id=None,
                    id=None,
                    type="",
                    outcome=OUTCOME_CODES[Outcome.INVALID],
                    error=f"$.sequence: expected int, got str (frame {i})",
                )
            )
        else:
            log.append_envelope(*envelope(i))
    statuses = ["idle", "connecting", "subscribed", "degraded", "reconnecting", "connecting"]
    for k, (prev, status) in enumerate(itertools.pairwise(statuses)):
        log.append_state(T0 + k, status, prev, None if k % 2 else f"reason {k}", k, 0.5 * k)
    for k, outcome in enumerate(["confirmed", "rejected", "queued", "timed_out"]):
        resolved = math.nan if outcome == "queued" else T0 + k + 0.1
        log.append_mutation(
            f"m{k}", "incidents", f"inc-{k}", T0 + k, resolved, outcome, 1.0, k == 2
        )
    for k in range(7):
        log.append_heartbeat(T0 + 5 * k, 2.0 + k, math.nan if k % 3 else 1.5)
    return log


def assert_same_log(left: EnvelopeLog, right: EnvelopeLog) -> None:
    for table in TABLES:
        assert_frame_equal(getattr(left, table), getattr(right, table), check_exact=True)
    assert left.summary() == right.summary()
    assert left.counts == right.counts
    assert left.dropped == right.dropped
    assert len(left) == len(right)


def test_all_four_tables_round_trip_exactly_through_one_file(tmp_path: Path) -> None:
    log = full_log()
    path = tmp_path / "incident.parquet"
    log.to_parquet(path)
    assert [p.name for p in tmp_path.iterdir()] == ["incident.parquet"]
    back = EnvelopeLog.read_parquet(path)
    assert_same_log(log, back)


@pytest.mark.slow
def test_round_trip_after_wrap_around_keeps_order_and_dropped_counts(tmp_path: Path) -> None:
    log = full_log(envelopes=1_337, capacity=100)
    assert log.dropped == {"envelopes": 1_237, "states": 1, "mutations": 1, "heartbeats": 2}
    log.to_parquet(tmp_path / "wrapped.parquet")
    back = EnvelopeLog.read_parquet(str(tmp_path / "wrapped.parquet"))
    assert_same_log(log, back)
    assert back.envelopes["sequence"].iloc[-1] == 1_336


def test_a_read_log_keeps_working_as_a_ring(tmp_path: Path) -> None:
    log = full_log(envelopes=130, capacity=100)
    log.to_parquet(tmp_path / "a.parquet")
    back = EnvelopeLog.read_parquet(tmp_path / "a.parquet")
    for i in range(130, 170):
        log.append_envelope(*envelope(i))
        back.append_envelope(*envelope(i))
    assert_same_log(log, back)
    assert back.capacity == log.capacity


def test_an_empty_log_round_trips(tmp_path: Path) -> None:
    log = EnvelopeLog()
    log.to_parquet(tmp_path / "empty.parquet")
    assert_same_log(log, EnvelopeLog.read_parquet(tmp_path / "empty.parquet"))


def test_the_file_is_plain_parquet_with_a_log_table_column(tmp_path: Path) -> None:
    log = full_log(envelopes=20)
    log.to_parquet(tmp_path / "x.parquet")
    frame = pd.read_parquet(tmp_path / "x.parquet")
    assert frame["log_table"].astype(str).value_counts().to_dict() == {
        "envelopes": 20,
        "heartbeats": 5,
        "states": 4,
        "mutations": 3,
    }
    states = frame[frame["log_table"] == "states"]
    assert states["status"].astype(str).tolist() == [
        "subscribed",
        "degraded",
        "reconnecting",
        "connecting",
    ]
    envelopes = frame[frame["log_table"] == "envelopes"]
    assert envelopes["received_at"].tolist() == [T0 + i * 0.001 for i in range(20)]
    metadata = pq.read_metadata(tmp_path / "x.parquet").metadata
    assert metadata[b"rtnb.schema_version"] == str(SCHEMA_VERSION).encode()


def _rewrite_metadata(path: Path, changes: dict[bytes, bytes]) -> None:
    table = pq.read_table(path)
    metadata = dict(table.schema.metadata or {})
    metadata.update(changes)
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_a_file_from_a_future_schema_version_is_refused_with_a_clear_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "future.parquet"
    full_log().to_parquet(path)
    _rewrite_metadata(path, {b"rtnb.schema_version": str(SCHEMA_VERSION + 1).encode()})
    with pytest.raises(TelemetryFileError) as err:
        EnvelopeLog.read_parquet(path)
    message = str(err.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert "upgrade rtnb" in message
    assert isinstance(err.value, ValueError)


def test_a_file_whose_metadata_does_not_match_its_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edited.parquet"
    full_log(envelopes=5).to_parquet(path)
    info = json.loads(pq.read_metadata(path).metadata[b"rtnb.log"])
    info["tables"]["envelopes"]["rows"] = 4
    _rewrite_metadata(path, {b"rtnb.log": json.dumps(info).encode()})
    with pytest.raises(TelemetryFileError, match="metadata lists"):
        EnvelopeLog.read_parquet(path)


def test_a_parquet_file_not_written_by_rtnb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    with pytest.raises(TelemetryFileError, match="not an rtnb telemetry log"):
        EnvelopeLog.read_parquet(path)


def test_an_unknown_outcome_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    full_log(envelopes=3).to_parquet(path)
    table = pq.read_table(path)
    outcome = table.column("outcome").cast("string").to_pylist()
    outcome[0] = "exploded"
    index = table.schema.get_field_index("outcome")
    table = table.set_column(
        index, table.schema.field(index), pa.array(outcome).dictionary_encode()
    )
    pq.write_table(table, path)
    with pytest.raises(TelemetryFileError, match="'exploded' is not an outcome"):
        EnvelopeLog.read_parquet(path)


envelope_rows = st.tuples(
    st.floats(1e9, 4e9),
    st.one_of(st.floats(1e9, 4e9), st.just(math.nan)),
    st.sampled_from(["incidents", "fleet", "orders"]),
    st.text(max_size=6),
    st.one_of(st.none(), st.text(max_size=8)),
    st.integers(-1, 2**62),
    st.one_of(st.none(), st.text(max_size=4)),
    st.integers(0, len(OUTCOMES_BY_CODE) - 1),
    st.sampled_from(["websocket", "sse", "polling"]),
    st.integers(0, 1_000),
    st.integers(0, 2**40),
    st.one_of(st.none(), st.text(max_size=20)),
)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(capacity=st.integers(1, 8), rows=st.lists(envelope_rows, max_size=25))
def test_any_envelope_log_round_trips(capacity: int, rows: list[tuple[Any, ...]]) -> None:
    log = EnvelopeLog(envelope_capacity=capacity)
    for args in rows:
        log.append_envelope(*args)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.parquet"
        log.to_parquet(path)
        assert_same_log(log, EnvelopeLog.read_parquet(path))


# -- crafted files (issue 17): a clear TelemetryFileError naming the file, fast ----------------


def _small_log_file(tmp_path: Path) -> Path:
    log = EnvelopeLog()
    for i in range(3):
        log.append_envelope(*envelope(i))
    path = tmp_path / "ok.parquet"
    log.to_parquet(path)
    return path


def test_a_zstd_bomb_is_refused_from_its_declared_size_before_it_is_read(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "bomb.parquet"
    # 32 MiB of zeros in plain pages compress to a few KB: the footer declares what
    # they become
    pq.write_table(
        pa.table({"x": np.zeros(4 << 20)}), path, compression="zstd", use_dictionary=False
    )
    assert path.stat().st_size < 200_000
    with pytest.raises(TelemetryFileError, match="declares over 1,048,576 bytes") as err:
        EnvelopeLog.read_parquet(path, max_bytes=1 << 20)
    assert str(path) in str(err.value)
    rle = tmp_path / "rle.parquet"  # the same zeros dictionary-encoded: tiny pages, 8 B a value
    pq.write_table(pa.table({"x": np.zeros(4 << 20)}), rle, compression="zstd")
    with pytest.raises(TelemetryFileError, match="declares over 1,048,576 bytes"):
        EnvelopeLog.read_parquet(rle, max_bytes=1 << 20)
    from rtnb.telemetry.parquet import MAX_READ_BYTES

    assert MAX_READ_BYTES == 2 * 1024**3


def _with_log_metadata(src: Path, dst: Path, raw: bytes) -> Path:
    table = pq.read_table(src)
    meta = dict(table.schema.metadata)
    meta[b"rtnb.log"] = raw
    pq.write_table(table.replace_schema_metadata(meta), dst)
    return dst


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "unreadable rtnb.log metadata"),  # was RecursionError
        (b"[]", "not an object"),  # was AttributeError
        (b'{"tables": {"envelopes": {"rows": "x"}}}', "malformed"),  # was TypeError/KeyError
        (b'{"tables": {"envelopes": []}}', "malformed"),
    ],
)
def test_crafted_metadata_is_a_telemetry_file_error_naming_the_file(
    tmp_path: Path, raw: bytes, what: str
) -> None:
    path = _with_log_metadata(_small_log_file(tmp_path), tmp_path / "crafted.parquet", raw)
    with pytest.raises(TelemetryFileError, match=what) as err:
        EnvelopeLog.read_parquet(path)
    assert str(path) in str(err.value)


def test_a_file_that_is_not_parquet_is_a_telemetry_file_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.parquet"
    path.write_bytes(b"PAR1" + b"\xff" * 100 + b"PAR1")
    with pytest.raises(TelemetryFileError, match=r"junk\.parquet"):
        EnvelopeLog.read_parquet(path)
