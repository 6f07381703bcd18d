"""The charts' pure numeric core: bins, per-group quantiles, clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.charts.binning import NICE_WIDTHS, clusters, group_quantiles, label, nice_bin

spans = st.floats(min_value=0, max_value=3e7, allow_nan=False)


@pytest.mark.slow
@settings(max_examples=500)
@given(spans, st.integers(1, 5_000))
def test_the_bin_width_is_the_smallest_nice_one_that_fits_the_bin_budget(
    span: float, max_bins: int
) -> None:
    width = nice_bin(span, max_bins)
    assert math.floor(span / width) + 1 <= max_bins
    smaller = [w for w in NICE_WIDTHS if w < width]
    assert all(math.floor(span / w) + 1 > max_bins for w in smaller)


def test_a_bin_budget_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bins"):
        nice_bin(10, 0)


@pytest.mark.slow
@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=300,
    )
)
def test_group_quantiles_equal_numpys_percentiles_per_group(pairs: list[tuple[int, float]]) -> None:
    groups = np.array([g for g, _ in pairs])
    values = np.array([v for _, v in pairs])
    ids, counts, qs = group_quantiles(groups, values, (0.5, 0.99))
    assert ids.tolist() == sorted(set(groups.tolist()))
    for gid, n, (p50, p99) in zip(ids, counts, qs, strict=True):
        mine = values[groups == gid]
        assert n == mine.size
        assert p50 == pytest.approx(np.percentile(mine, 50))
        assert p99 == pytest.approx(np.percentile(mine, 99))


@pytest.mark.slow
@settings(max_examples=300)
@given(
    st.lists(st.floats(0, 1000, allow_nan=False) | st.just(float("nan")), max_size=200),
    st.floats(0, 50),
)
def test_clusters_put_every_mark_in_exactly_one_run_and_keep_runs_apart(
    times: list[float], join: float
) -> None:
    starts, ends, counts = clusters(np.array(times), join)
    finite = sorted(t for t in times if not math.isnan(t))
    assert counts.sum() == len(finite)
    assert np.all(starts <= ends)
    assert np.all(starts[1:] - ends[:-1] > join)
    for t in finite:
        assert np.sum((starts <= t) & (t <= ends)) == 1


def test_bin_widths_read_naturally() -> None:
    assert [label(w) for w in (0.05, 5.0, 900.0, 7200.0, 86400.0)] == [
        "50 ms",
        "5 s",
        "15 min",
        "2 h",
        "1 d",
    ]
