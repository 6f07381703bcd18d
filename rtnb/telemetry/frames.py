"""DataFrames from ring snapshots (DESIGN.md §5), built with numpy in O(rows).

Dtypes:

* times (``received_at``, ``occurred_at``, ``at``, ``created_at``,
  ``resolved_at``): ``datetime64[ns, UTC]``, converted exactly (nearest
  nanosecond) from the float unix seconds the log stores; NaN -> NaT.
* dictionary-encoded strings: ``category`` whose categories are the values
  present in the rows, sorted -- except ``outcome`` of envelopes (all
  :class:`rtnb.Outcome` values, in code order) and ``status`` / ``previous``
  (all :class:`rtnb.Status` values in lifecycle order, then any others sorted),
  so ``value_counts()`` lists zeros too. ``reason`` is ``str``.
* ids and errors: ``str`` (missing is NaN); ``sequence``: nullable ``Int64``
  (NA where the log holds -1); other integers ``int64``; ``while_degraded``
  ``bool``; figures ``float64``.

Categories depend only on the rows, so a log read back from parquet gives
frames equal to the original's.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from ..core.status import OUTCOMES_BY_CODE, Status
from .ring import TableSnapshot
from .schema import STATE_DERIVED

TIME_COLUMNS = frozenset({"received_at", "occurred_at", "at", "created_at", "resolved_at"})
_NS = 1_000_000_000
_MAX_S = 9.2e9  # datetime64[ns] covers about ±9.22e9 s around 1970
_STR = pd.StringDtype("pyarrow", na_value=np.nan)
_TYPES = {"d": np.float64, "q": np.int64, "i": np.int32, "B": np.uint8}
_STATUSES = tuple(s.value for s in Status)
_OUTCOMES = tuple(o.value for o in OUTCOMES_BY_CODE)


def ordered(snap: TableSnapshot, name: str) -> np.ndarray[Any, Any]:
    """Column ``name`` as a numpy array in arrival order (oldest first)."""
    store = snap.columns[name]
    assert isinstance(store, array)
    dtype = _TYPES[store.typecode]
    if not len(store):
        return np.empty(0, dtype=dtype)
    values = np.frombuffer(store, dtype=dtype)  # a view of the snapshot's private copy
    if snap.start:
        return np.concatenate((values[snap.start :], values[: snap.start]))
    return values


def ordered_list(snap: TableSnapshot, name: str) -> list[Any]:
    store = snap.columns[name]
    assert isinstance(store, list)
    return store[snap.start :] + store[: snap.start] if snap.start else store


def seconds_to_utc(seconds: np.ndarray[Any, Any]) -> pd.DatetimeIndex:
    """Unix seconds -> ``datetime64[ns, UTC]``, rounded to the nearest ns; NaN/inf -> NaT.

    Splitting into whole and fractional seconds keeps it exact: ``x * 1e9`` in
    float64 would be off by up to 128 ns at today's timestamps.
    """
    ok = np.isfinite(seconds) & (np.abs(seconds) < _MAX_S)
    safe = np.where(ok, seconds, 0.0)
    whole = np.floor(safe)
    ns = whole.astype(np.int64) * _NS + np.rint((safe - whole) * 1e9).astype(np.int64)
    ns[~ok] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(ns.view("M8[ns]"), copy=False).tz_localize("UTC")


def categorical(
    codes: np.ndarray[Any, Any], values: Sequence[str], fixed: Sequence[str] = ()
) -> pd.Categorical:
    """Codes into ``values`` (-1 missing) -> Categorical of ``fixed`` + used values, sorted."""
    codes = codes.astype(np.int32, copy=False)
    used: list[int] = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(values))).tolist()
    present = {values[i] for i in used}
    categories = list(fixed) + sorted(present.difference(fixed))
    position = {v: i for i, v in enumerate(categories)}
    lut = np.full(len(values) + 1, -1, dtype=np.int32)  # lut[-1] stays -1 for missing
    for i in used:
        lut[i] = position[values[i]]
    dtype = pd.CategoricalDtype(pd.Index(categories, dtype=_STR), ordered=False)
    return pd.Categorical.from_codes(lut[codes], dtype=dtype, validate=False)


def strings(values: list[Any]) -> pd.Series[str]:
    """Python ``str | None`` values -> pandas ``str`` Series (None -> NaN)."""
    return pd.Series(pa.array(values, type=pa.string()), dtype=_STR, copy=False)


def _sparse(snap: TableSnapshot, name: str) -> pd.Series[str]:
    values: list[str | None] = [None] * snap.held
    first = snap.total - snap.held
    for row, text in snap.sparse[name]:
        values[row - first] = text
    return strings(values)


def _column(snap: TableSnapshot, name: str, kind: str) -> Any:
    if kind == "sparse":
        return _sparse(snap, name)
    if kind == "str":
        return strings(ordered_list(snap, name))
    values = ordered(snap, name)
    if kind == "float":
        return seconds_to_utc(values) if name in TIME_COLUMNS else values
    if kind in ("int", "int32"):
        if name == "sequence":
            return pd.arrays.IntegerArray(values.astype(np.int64), values < 0)
        return values.astype(np.int64, copy=False)
    if kind == "bool":
        return values.astype(bool)
    if kind == "code8":
        dtype = pd.CategoricalDtype(pd.Index(_OUTCOMES, dtype=_STR), ordered=False)
        return pd.Categorical.from_codes(values.astype(np.int8), dtype=dtype, validate=False)
    fixed = _STATUSES if name in ("status", "previous") else ()
    cat = categorical(values, snap.categories[name], fixed)
    if name == "reason":
        return pd.Series(cat).astype(_STR).array
    return cat


def build(snap: TableSnapshot) -> pd.DataFrame:
    """All stored columns of ``snap`` as a DataFrame, in spec order."""
    data = {c.name: _column(snap, c.name, c.kind) for c in snap.spec.columns}
    return pd.DataFrame(data, index=pd.RangeIndex(snap.held), copy=False)


def envelopes_frame(snap: TableSnapshot) -> pd.DataFrame:
    frame = build(snap)
    lag = (ordered(snap, "received_at") - ordered(snap, "occurred_at")) * 1000.0
    frame.insert(2, "lag_ms", lag)
    return frame


def states_frame(snap: TableSnapshot) -> pd.DataFrame:
    """The stored columns plus ``time_in_status_s`` (see :data:`rtnb.telemetry.schema.STATES`)."""
    frame = build(snap)
    at = ordered(snap, "at")
    spent = np.full(len(at), np.nan)
    if len(at) > 1:
        spent[:-1] = np.diff(at)
    frame[STATE_DERIVED] = spent
    return frame


def mutations_frame(snap: TableSnapshot) -> pd.DataFrame:
    return build(snap)


def heartbeats_frame(snap: TableSnapshot) -> pd.DataFrame:
    return build(snap)
