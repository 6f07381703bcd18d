"""Pure numeric helpers for the charts: time bins, per-bin quantiles, clusters of marks.

Charts must render a million-envelope log without handing a million rows to
Vega-Lite, so every chart aggregates here first, in numpy, to a bounded
number of rows. Nothing here knows about pandas, altair or the log.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

#: Candidate bin widths in seconds (1 ms ... 1 week), smallest first.
NICE_WIDTHS: Final = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0, 604800.0,
)  # fmt: skip

Array = np.ndarray[Any, Any]


def nice_bin(span_s: float, max_bins: int) -> float:
    """The smallest width in :data:`NICE_WIDTHS` that covers ``span_s`` in ``max_bins`` bins.

    A span longer than a week in ``max_bins`` bins gets whole weeks.
    """
    if max_bins < 1:
        raise ValueError(f"max_bins must be >= 1, got {max_bins}")
    span = max(0.0, float(span_s)) if math.isfinite(span_s) else 0.0
    for width in NICE_WIDTHS:
        if math.floor(span / width) + 1 <= max_bins:
            return width
    weeks = math.ceil((span / NICE_WIDTHS[-1] + 1) / max_bins)
    width = NICE_WIDTHS[-1] * weeks
    while math.floor(span / width) + 1 > max_bins:  # float rounding at the edge
        width += NICE_WIDTHS[-1]
    return width


def bin_index(times: Array, origin: float, width: float) -> Array:
    """Bin of each time: ``floor((t - origin) / width)`` as int64."""
    return np.floor((np.asarray(times, dtype=np.float64) - origin) / width).astype(np.int64)


def group_quantiles(
    groups: Array, values: Array, qs: tuple[float, ...]
) -> tuple[Array, Array, Array]:
    """Quantiles of ``values`` per group (numpy's default linear interpolation).

    ``groups`` are small non-negative ints. Returns ``(group_ids, counts,
    quantiles)`` for the groups that have values, ``quantiles`` shaped
    ``(len(group_ids), len(qs))``.
    """
    groups = np.asarray(groups)
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty((0, len(qs)))
    small = groups.astype(np.int16) if groups.max() < 2**15 else groups
    order = np.argsort(small, kind="stable")  # radix sort for int16
    sorted_groups, sorted_values = groups[order], values[order]
    ids, starts, counts = np.unique(sorted_groups, return_index=True, return_counts=True)
    out = np.empty((ids.size, len(qs)))
    percent = [100.0 * q for q in qs]
    for k, (a, n) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
        out[k] = np.percentile(sorted_values[a : a + n], percent)
    return ids.astype(np.int64), counts.astype(np.int64), out


def clusters(times: Array, join: float) -> tuple[Array, Array, Array]:
    """Runs of marks at most ``join`` seconds apart: ``(starts, ends, counts)``.

    ``times`` need not be sorted; NaNs are ignored. Every time lies in exactly
    one run, runs are disjoint, ordered, and more than ``join`` apart.
    """
    t = np.sort(np.asarray(times, dtype=np.float64))
    t = t[np.isfinite(t)]
    if not t.size:
        empty = np.empty(0)
        return empty, empty, np.empty(0, np.int64)
    breaks = np.flatnonzero(np.diff(t) > join) + 1
    first = np.concatenate(([0], breaks))
    last = np.concatenate((breaks, [t.size])) - 1
    return t[first], t[last], (last - first + 1).astype(np.int64)


def label(width: float) -> str:
    """A bin width for humans: ``"10 ms"``, ``"5 s"``, ``"15 min"``, ``"2 h"``, ``"1 d"``."""
    if width < 1:
        return f"{width * 1000:g} ms"
    if width < 60:
        return f"{width:g} s"
    if width < 3600:
        return f"{width / 60:g} min"
    if width < 86400:
        return f"{width / 3600:g} h"
    return f"{width / 86400:g} d"
