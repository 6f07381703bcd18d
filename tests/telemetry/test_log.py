"""EnvelopeLog: ring buffers, DataFrames, counts, threading, memory."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from fractions import Fraction
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rtnb.telemetry.log as log_module
from rtnb.core.status import OUTCOME_CODES, OUTCOMES_BY_CODE, Outcome, Status
from rtnb.protocol.errors import LocalProtocolError
from rtnb.telemetry import (
    ENVELOPE_CAPACITY,
    HEARTBEAT_CAPACITY,
    MUTATION_CAPACITY,
    STATE_CAPACITY,
    EnvelopeLog,
)
from rtnb.telemetry import ring as ring_module
from rtnb.telemetry.schema import ENVELOPES

T0 = 1_760_000_000.0
ENVELOPE_COLUMNS = list(ENVELOPES.names)
APPLIED = OUTCOME_CODES[Outcome.APPLIED]
INVALID = OUTCOME_CODES[Outcome.INVALID]

ENVELOPE_DTYPES = {
    "received_at": "datetime64[ns, UTC]",
    "occurred_at": "datetime64[ns, UTC]",
    "lag_ms": "float64",
    "topic": "category",
    "type": "category",
    "id": "str",
    "sequence": "Int64",
    "entity_id": "category",
    "outcome": "category",
    "transport": "category",
    "connection_attempt": "int64",
    "bytes": "int64",
    "count": "int64",
    "error": "str",
}


def envelope(i: int, **changes: Any) -> tuple[Any, ...]:
    """Arguments of append_envelope for row ``i`` (every column derived from ``i``)."""
    args: dict[str, Any] = {
        "received_at": T0 + i * 0.001,
        "occurred_at": T0 + i * 0.001 - 0.004,
        "topic": ("incidents", "fleet", "orders")[i % 3],
        "type": f"t{i % 5}.updated",
        "id": f"evt-{i}",
        "sequence": i,
        "entity_id": f"ent-{i % 7}",
        "outcome": i % len(OUTCOMES_BY_CODE),
        "transport": "websocket",
        "attempt": 1 + i // 100,
        "nbytes": 200 + i,
        "error": None,
        "count": 1,
    }
    args.update(changes)
    return tuple(args.values())


def ns(seconds: float) -> int | None:
    """Exact nearest nanosecond, the reference for the datetime columns."""
    return None if math.isnan(seconds) else round(Fraction(seconds) * 10**9)


def expected_record(args: tuple[Any, ...]) -> tuple[Any, ...]:
    r, o, topic, type_, id_, seq, ent, outcome, transport, attempt, nbytes, error, *more = args
    count = more[0] if more else 1
    lag = (r - o) * 1000.0
    return (
        ns(r),
        ns(o),
        None if math.isnan(lag) else lag,
        topic,
        type_,
        id_,
        None if seq < 0 else seq,
        ent,
        OUTCOMES_BY_CODE[outcome].value,
        transport,
        attempt,
        nbytes,
        count,
        error,
    )


def plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value (missing -> None, datetimes -> ns)."""
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def records(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)]


# -- rows, order, dtypes ---------------------------------------------------------------------


def test_envelopes_come_back_in_arrival_order_with_the_documented_dtypes() -> None:
    log = EnvelopeLog()
    rows = [envelope(i) for i in range(10)]
    rows[3] = envelope(3, occurred_at=math.nan, sequence=-1, entity_id=None, id=None)
    rows[4] = envelope(4, outcome=INVALID, error="$.sequence: expected int, got str")
    for args in rows:
        log.append_envelope(*args)

    frame = log.envelopes
    assert {k: str(v) for k, v in frame.dtypes.items()} == ENVELOPE_DTYPES
    assert list(frame.columns) == list(ENVELOPE_DTYPES)
    assert records(frame) == [expected_record(a) for a in rows]
    assert len(log) == 10


def test_outcome_categories_list_every_outcome_in_code_order() -> None:
    log = EnvelopeLog()
    log.append_envelope(*envelope(0, outcome=APPLIED))
    categories = list(log.envelopes["outcome"].cat.categories)
    assert categories == [o.value for o in OUTCOMES_BY_CODE]
    assert log.envelopes["outcome"].value_counts()["duplicate"] == 0


def test_string_categories_are_the_values_present_sorted() -> None:
    log = EnvelopeLog(envelope_capacity=2)
    for i, topic in enumerate(["zeta", "alpha", "mid"]):
        log.append_envelope(*envelope(i, topic=topic))
    # "zeta" was overwritten, so it is no longer a category.
    assert list(log.envelopes["topic"].cat.categories) == ["alpha", "mid"]


def test_an_empty_log_gives_empty_frames_with_the_same_columns_and_dtypes() -> None:
    log = EnvelopeLog()
    frame = log.envelopes
    assert frame.empty
    assert {k: str(v) for k, v in frame.dtypes.items()} == ENVELOPE_DTYPES
    assert list(log.states.columns) == [
        "at",
        "status",
        "previous",
        "reason",
        "attempt",
        "duration_s",
        "time_in_status_s",
    ]
    assert len(log) == 0


def test_states_mutations_and_heartbeats_have_their_columns_and_dtypes() -> None:
    log = EnvelopeLog()
    log.append_state(T0, Status.CONNECTING, Status.IDLE, "connect()", 1, 0.25)
    log.append_state(T0 + 1, "subscribed", "connecting", None, 1, math.nan)
    log.append_mutation("m-1", "incidents", "inc-1", T0, T0 + 0.05, "confirmed", 50.0, False)
    log.append_mutation("m-2", "incidents", None, T0, math.nan, "queued", math.nan, True)
    log.append_heartbeat(T0, 3.5, math.nan)

    states = log.states
    assert {k: str(v) for k, v in states.dtypes.items()} == {
        "at": "datetime64[ns, UTC]",
        "status": "category",
        "previous": "category",
        "reason": "str",
        "attempt": "int64",
        "duration_s": "float64",
        "time_in_status_s": "float64",
    }
    # duration_s: time in `previous`; time_in_status_s: time in `status` (NaN: still in it).
    assert records(states) == [
        (ns(T0), "connecting", "idle", "connect()", 1, 0.25, 1.0),
        (ns(T0 + 1), "subscribed", "connecting", None, 1, None, None),
    ]
    # Every Status is a category, in lifecycle order, and values are plain str.
    assert list(states["status"].cat.categories) == [s.value for s in Status]
    assert type(states["status"].cat.categories[0]) is str

    mutations = log.mutations
    assert {k: str(v) for k, v in mutations.dtypes.items()} == {
        "client_mutation_id": "str",
        "topic": "category",
        "entity_id": "category",
        "created_at": "datetime64[ns, UTC]",
        "resolved_at": "datetime64[ns, UTC]",
        "outcome": "category",
        "latency_ms": "float64",
        "while_degraded": "bool",
    }
    assert records(mutations) == [
        ("m-1", "incidents", "inc-1", ns(T0), ns(T0 + 0.05), "confirmed", 50.0, False),
        ("m-2", "incidents", None, ns(T0), None, "queued", None, True),
    ]

    heartbeats = log.heartbeats
    assert {k: str(v) for k, v in heartbeats.dtypes.items()} == {
        "at": "datetime64[ns, UTC]",
        "rtt_ms": "float64",
        "server_lag_ms": "float64",
    }
    assert records(heartbeats) == [(ns(T0), 3.5, None)]


# -- the ring ----------------------------------------------------------------------------------


def test_ring_keeps_the_newest_capacity_rows_in_order_and_counts_overflow() -> None:
    log = EnvelopeLog(envelope_capacity=300)
    rows = [envelope(i) for i in range(2_000)]  # several commits, one larger than capacity
    for args in rows:
        log.append_envelope(*args)

    assert records(log.envelopes) == [expected_record(a) for a in rows[-300:]]
    assert len(log) == 300
    assert log.dropped["envelopes"] == 1_700
    assert sum(log.counts.values()) == 2_000
    assert "(1,700 dropped)" in repr(log)


def test_other_tables_are_rings_too() -> None:
    log = EnvelopeLog(state_capacity=2, mutation_capacity=1, heartbeat_capacity=3)
    for i in range(5):
        log.append_state(T0 + i, "connecting", "idle", f"r{i}", i, 1.0)
        log.append_mutation(f"m{i}", "t", "e", T0, T0 + 1, "confirmed", 1.0, False)
        log.append_heartbeat(T0 + i, float(i), 0.0)
    assert log.states["reason"].tolist() == ["r3", "r4"]
    assert log.mutations["client_mutation_id"].tolist() == ["m4"]
    assert log.heartbeats["rtt_ms"].tolist() == [2.0, 3.0, 4.0]
    assert log.dropped == {"envelopes": 0, "states": 3, "mutations": 4, "heartbeats": 2}


reals = st.floats(1e9, 4e9, allow_nan=False)
envelope_rows = st.tuples(
    reals,
    st.one_of(reals, st.just(math.nan)),
    st.sampled_from(["incidents", "fleet", "orders"]),
    st.sampled_from(["a.created", "a.updated", "a.deleted", "b.x", "c.y"]),
    st.one_of(st.none(), st.text(max_size=8)),
    st.integers(-1, 2**62),
    st.one_of(st.none(), st.sampled_from(["e1", "e2", "e3", "ü"])),
    st.integers(0, len(OUTCOMES_BY_CODE) - 1),
    st.sampled_from(["websocket", "sse", "polling"]),
    st.integers(0, 1_000),
    st.integers(0, 2**40),
    st.one_of(st.none(), st.text(max_size=20)),
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 12),
    batch=st.integers(1, 5),
    steps=st.lists(st.tuples(envelope_rows, st.booleans()), max_size=40),
)
def test_any_appends_leave_the_last_capacity_rows_and_honest_counts(
    capacity: int, batch: int, steps: list[tuple[tuple[Any, ...], bool]]
) -> None:
    # A tiny commit batch, and reads between appends, exercise every commit boundary.
    with (
        mock.patch.object(ring_module, "BATCH", batch),
        mock.patch.object(log_module, "_ENVELOPE_FLAT_BATCH", batch * 12),
    ):
        log = EnvelopeLog(envelope_capacity=capacity)
        appended = []
        for args, read in steps:
            log.append_envelope(*args)
            appended.append(args)
            if read:
                assert records(log.envelopes) == [expected_record(a) for a in appended[-capacity:]]
        assert records(log.envelopes) == [expected_record(a) for a in appended[-capacity:]]
        assert len(log) == min(capacity, len(appended))
        assert log.dropped["envelopes"] == max(0, len(appended) - capacity)
        totals = {o.value: 0 for o in OUTCOMES_BY_CODE}
        for args in appended:
            totals[OUTCOMES_BY_CODE[args[7]].value] += 1
        assert log.counts == totals


def test_counts_include_envelopes_dropped_by_overflow() -> None:
    log = EnvelopeLog(envelope_capacity=3)
    for i in range(10):
        log.append_envelope(*envelope(i, outcome=APPLIED if i < 8 else INVALID))
    assert log.counts["applied"] == 8
    assert log.counts["invalid"] == 2
    assert log.envelopes["outcome"].tolist() == ["applied", "invalid", "invalid"]


def test_entity_dictionary_stays_bounded_when_ids_never_repeat() -> None:
    with mock.patch.object(ring_module, "COMPACT_MIN", 50):
        log = EnvelopeLog(envelope_capacity=20)
        for i in range(5_000):
            log.append_envelope(*envelope(i, entity_id=f"order-{i}"))
        assert log.envelopes["entity_id"].tolist() == [f"order-{i}" for i in range(4_980, 5_000)]
        codes = log._envelopes.codes[ENVELOPE_COLUMNS.index("entity_id")]
        assert codes is not None
        assert len(codes.values) <= 50 + ring_module.BATCH


def test_enum_members_are_stored_as_their_plain_values() -> None:
    log = EnvelopeLog()
    log.append_state(T0, Status.SUBSCRIBED, Status.AUTHENTICATED, "ok", 1, 0.1)
    log.append_state(T0, "subscribed", "authenticated", "ok", 1, 0.1)
    assert log.states["status"].tolist() == ["subscribed", "subscribed"]


# -- bad input, clear, repr ---------------------------------------------------------------------


def test_wrong_types_raise_local_protocol_error_and_the_other_rows_are_kept() -> None:
    log = EnvelopeLog()
    log.append_envelope(*envelope(0))
    log.append_envelope(*envelope(1, sequence="12"))
    log.append_envelope(*envelope(2))
    with pytest.raises(LocalProtocolError, match=r"'sequence' got '12'.*1 row\(s\)"):
        len(log)
    assert log.envelopes["id"].tolist() == ["evt-0", "evt-2"]
    assert sum(log.counts.values()) == 2


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"outcome": len(OUTCOMES_BY_CODE)}, "outcome"),
        ({"outcome": -1}, "outcome"),
        ({"received_at": None}, "received_at"),
        ({"topic": 3}, "topic"),
        ({"id": b"evt"}, "id"),
        ({"error": 1.5}, "error"),
        ({"attempt": 2**40}, "connection_attempt"),
    ],
)
def test_each_bad_value_is_reported_with_its_column(change: dict[str, Any], column: str) -> None:
    log = EnvelopeLog()
    log.append_envelope(*envelope(0, **change))
    with pytest.raises(LocalProtocolError, match=f"column '{column}'"):
        log.envelopes  # noqa: B018
    assert len(log) == 0


def test_clear_forgets_rows_counts_and_drops() -> None:
    log = EnvelopeLog(envelope_capacity=2)
    for i in range(5):
        log.append_envelope(*envelope(i))
    log.append_state(T0, "connecting", "idle", None, 1, 0.0)
    log.clear()
    assert len(log) == 0
    assert sum(log.counts.values()) == 0
    assert log.dropped == {"envelopes": 0, "states": 0, "mutations": 0, "heartbeats": 0}
    log.append_envelope(*envelope(9))
    assert log.envelopes["id"].tolist() == ["evt-9"]


@pytest.mark.slow
def test_repr_shows_rows_and_drops_per_table() -> None:
    log = EnvelopeLog(envelope_capacity=12_345)
    for i in range(12_348):
        log.append_envelope(*envelope(i))
    for _ in range(2):
        log.append_state(T0, "connecting", "idle", None, 1, 0.0)
    assert repr(log) == (
        "<EnvelopeLog 12,345 envelopes (3 dropped), 2 states, 0 mutations, 0 heartbeats>"
    )


def test_capacity_must_be_a_positive_int() -> None:
    with pytest.raises(ValueError, match="envelopes capacity"):
        EnvelopeLog(envelope_capacity=0)


def test_documented_default_capacities_match_the_constants() -> None:
    log = EnvelopeLog()
    assert log.capacity == {
        "envelopes": ENVELOPE_CAPACITY,
        "states": STATE_CAPACITY,
        "mutations": MUTATION_CAPACITY,
        "heartbeats": HEARTBEAT_CAPACITY,
    }
    doc = EnvelopeLog.__doc__ or ""
    for name, value in [
        ("ENVELOPE_CAPACITY", ENVELOPE_CAPACITY),
        ("STATE_CAPACITY", STATE_CAPACITY),
        ("MUTATION_CAPACITY", MUTATION_CAPACITY),
        ("HEARTBEAT_CAPACITY", HEARTBEAT_CAPACITY),
    ]:
        assert f"{name}` = {value:,}" in doc


def test_the_append_api_takes_no_token_or_replay_cursor() -> None:
    import inspect

    for method in ("append_envelope", "append_state", "append_mutation", "append_heartbeat"):
        params = inspect.signature(getattr(EnvelopeLog, method)).parameters
        assert not {p for p in params if "token" in p or "cursor" in p}


# -- threads, imports, memory --------------------------------------------------------------------


@pytest.mark.slow
def test_frames_built_while_another_thread_appends_are_consistent_snapshots() -> None:
    log = EnvelopeLog(envelope_capacity=5_000)
    total = 60_000
    done = threading.Event()

    def writer() -> None:
        for i in range(total):
            log.append_envelope(*envelope(i))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    builds = 0
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        frame = log.envelopes
        builds += 1
        seq = frame["sequence"].to_numpy(dtype=np.int64)
        # Every row is whole (all columns from the same append) and rows are consecutive.
        assert (frame["bytes"].to_numpy() == seq + 200).all()
        assert (frame["id"] == "evt-" + frame["sequence"].astype(str)).all()
        assert (np.diff(seq) == 1).all()
    thread.join()
    assert done.is_set()
    assert builds > 0
    assert len(log) == 5_000
    assert log.envelopes["sequence"].iloc[-1] == total - 1
    assert sum(log.counts.values()) == total


def test_importing_the_log_does_not_import_pandas_numpy_or_pyarrow() -> None:
    code = (
        "import sys, rtnb.telemetry.log, rtnb.telemetry\n"
        "log = rtnb.telemetry.EnvelopeLog()\n"
        "log.append_envelope(1.0, 1.0, 't', 'x', 'evt', 1, 'e', 0, 'websocket', 1, 10)\n"
        "assert len(log) == 1\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'pyarrow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def fresh(text: str) -> str:
    """An equal but new str object."""
    return (text + ".")[:-1]


@pytest.mark.slow
def test_memory_per_logged_envelope_is_at_most_200_bytes() -> None:
    """DESIGN.md §6: the log holds <= 200 bytes per envelope, strings it keeps included."""
    n = 50_000
    entities = [f"inc-{i}" for i in range(1_000)]
    topics = ["incidents", "fleet", "orders"]
    types = ["a.created", "a.updated", "a.deleted", "b.moved", "c.placed"]
    log = EnvelopeLog()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            # Fresh str objects, as a decoder produces them; only the log keeps them alive.
            log.append_envelope(
                T0 + i * 1e-4,
                T0 + i * 1e-4 - 0.003,
                fresh(topics[i % 3]),
                fresh(types[i % 5]),
                "evt-" + uuid.uuid4().hex,
                i,
                fresh(entities[(i * 7919) % 1_000]),
                APPLIED,
                "websocket",
                1,
                300,
            )
        len(log)  # commit what is pending
        gc.collect()
        per_envelope = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_envelope <= 200, f"{per_envelope:.1f} bytes per envelope"


# -- bulk append (a batch frame's rows as columns) ------------------------------------------------


def _bulk(log: EnvelopeLog, rows: list[tuple[Any, ...]]) -> None:
    """``append_envelopes`` of ``rows`` (error None, count 1): columns, constants as one value."""
    if not rows:
        log.append_envelopes(0, [], [], [], [], [], [], [], [], "websocket", 1, [])
        return
    cols = list(zip(*rows, strict=True))[:11]
    args = [c[0] if len(set(c)) == 1 and k in (8, 9) else list(c) for k, c in enumerate(cols)]
    log.append_envelopes(len(rows), *args)


def _table(log: EnvelopeLog) -> list[list[str]]:
    return log.envelopes.astype(str).values.tolist()  # type: ignore[no-any-return]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=8), st.integers(1, 600))
def test_bulk_rows_are_the_rows_appended_one_by_one(sizes: list[int], capacity: int) -> None:
    one, bulk = EnvelopeLog(envelope_capacity=capacity), EnvelopeLog(envelope_capacity=capacity)
    i = 0
    for n in sizes:
        rows = [envelope(k, error=None, count=1) for k in range(i, i + n)]
        i += n
        for r in rows:
            one.append_envelope(*r)
        one.append_envelope(*envelope(i, error="bad frame"))  # a row between batches
        _bulk(bulk, rows)
        bulk.append_envelope(*envelope(i, error="bad frame"))
        i += 1
    assert _table(bulk) == _table(one)
    assert bulk.counts == one.counts and bulk.dropped == one.dropped


def test_bulk_rows_with_a_bad_value_keep_the_good_rows_and_say_which_column() -> None:
    log = EnvelopeLog()
    rows = [envelope(k, error=None, count=1) for k in range(4)]
    rows[2] = envelope(2, sequence="12", error=None, count=1)
    _bulk(log, rows)
    with pytest.raises(LocalProtocolError, match=r"'sequence' got '12'.*1 row\(s\)"):
        len(log)
    assert log.envelopes["id"].tolist() == ["evt-0", "evt-1", "evt-3"]


def test_bulk_rows_wait_while_a_reader_holds_the_lock() -> None:
    log = EnvelopeLog()
    ring = log._envelopes
    with ring.lock:  # a reader copying the columns: the rows are queued, not lost
        _bulk(log, [envelope(k, error=None, count=1) for k in range(3)])
        assert ring.held == 0 and len(ring.pending) == 3 * ring.width
    assert log.envelopes["id"].tolist() == ["evt-0", "evt-1", "evt-2"]
