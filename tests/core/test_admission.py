"""Tests for rtnb.core.admission: the token bucket's bound and the queue-position hints."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.core.admission import (
    DEFAULT_BURST_SECONDS,
    DEFAULT_MAX_HINT,
    DEFAULT_MIN_BURST,
    AdmissionControl,
)

rates = st.floats(min_value=0.5, max_value=5000.0)
bursts = st.floats(min_value=1.0, max_value=200.0)
gaps = st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def arrivals(increments: list[float], scale: float) -> list[float]:
    return list(itertools.accumulate(g * scale for g in increments))


def admitted_within_bound(times: list[float], rate: float, burst: float) -> bool:
    """True if every window [times[i], times[j]] holds at most rate·width + burst admissions."""
    return all(
        j - i + 1 <= rate * (times[j] - times[i]) + burst + 1e-6
        for i in range(len(times))
        for j in range(i, len(times))
    )


# --- the bound ------------------------------------------------------------------------


@given(rates, bursts, gaps, st.floats(min_value=0.001, max_value=10.0), seeds)
def test_never_admits_more_than_rate_times_window_plus_burst(
    rate: float, burst: float, increments: list[float], scale: float, seed: int
) -> None:
    ac = AdmissionControl(rate, burst, rng=random.Random(seed))
    admitted = [t for t in arrivals(increments, scale) if ac.try_admit(t) is None]
    assert admitted_within_bound(admitted, rate, burst)


@given(rates, bursts, gaps, st.floats(min_value=0.001, max_value=10.0), seeds)
def test_hints_are_positive_and_at_most_max_hint(
    rate: float, burst: float, increments: list[float], scale: float, seed: int
) -> None:
    max_hint = max(DEFAULT_MAX_HINT, 2.0 / rate)
    ac = AdmissionControl(rate, burst, max_hint=max_hint, rng=random.Random(seed))
    for t in arrivals(increments, scale):
        hint = ac.try_admit(t)
        assert hint is None or 0.0 < hint <= max_hint


def test_a_full_bucket_admits_a_burst_at_once_then_refuses() -> None:
    ac = AdmissionControl(100.0, 5, rng=random.Random(1))
    results = [ac.try_admit(10.0) for _ in range(7)]
    assert results[:5] == [None] * 5
    assert all(h is not None and h > 0 for h in results[5:])


def test_tokens_refill_at_rate() -> None:
    ac = AdmissionControl(10.0, 1, rng=random.Random(1))
    assert ac.try_admit(0.0) is None
    assert ac.try_admit(0.05) is not None
    assert ac.try_admit(0.1) is None


# --- the hints ----------------------------------------------------------------------


def test_each_refused_client_gets_its_own_slot_in_the_queue() -> None:
    rate = 100.0
    ac = AdmissionControl(rate, 1, rng=random.Random(7))
    assert ac.try_admit(0.0) is None
    hints = [ac.try_admit(0.0) for _ in range(50)]
    assert all(h is not None for h in hints)
    # The first slot starts when the next token accrues (1/rate), then one per 1/rate.
    slots = [math.floor(h * rate) for h in hints if h is not None]
    assert slots == list(range(1, 51))
    assert ac.backlog(0.01) == pytest.approx(50.0)
    assert ac.backlog(0.26) == pytest.approx(25.0)
    assert ac.backlog(1.0) == 0.0


@given(
    st.floats(min_value=1.0, max_value=2000.0),
    st.integers(min_value=2, max_value=50),
    st.integers(min_value=1, max_value=400),
    seeds,
)
def test_refused_clients_that_return_at_their_hint_are_admitted(
    rate: float, burst: int, crowd: int, seed: int
) -> None:
    """A crowd arrives at once; everyone refused comes back when told (burst >= 2)."""
    ac = AdmissionControl(rate, burst, max_hint=1e6, rng=random.Random(seed))
    returns: list[float] = []
    for _ in range(crowd):
        hint = ac.try_admit(0.0)
        if hint is not None:
            returns.append(hint)
    assert len(returns) == max(0, crowd - burst)
    assert all(ac.try_admit(t) is None for t in sorted(returns))


def test_a_queue_longer_than_max_hint_is_spread_over_its_upper_half() -> None:
    ac = AdmissionControl(10.0, 1, max_hint=2.0, rng=random.Random(3))
    ac.try_admit(0.0)
    hints = [ac.try_admit(0.0) for _ in range(200)]
    assert all(h is not None and 0 < h <= 2.0 for h in hints)
    overflow = [h for h in hints[30:] if h is not None]
    assert all(1.0 <= h <= 2.0 for h in overflow)
    assert max(overflow) - min(overflow) > 0.5  # spread, not one instant


def test_same_seed_gives_the_same_hints() -> None:
    def run(seed: int) -> list[float | None]:
        ac = AdmissionControl(50.0, 2, rng=random.Random(seed))
        return [ac.try_admit(t / 1000) for t in range(300)]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_time_going_backwards_counts_as_no_time_passing() -> None:
    ac = AdmissionControl(1.0, 1, rng=random.Random(1))
    assert ac.try_admit(100.0) is None
    assert ac.try_admit(50.0) is not None  # no refill from the past
    assert ac.try_admit(101.0) is None


def test_a_storm_of_refused_clients_drains_at_the_admission_rate() -> None:
    """2,000 clients at once, 100/s: everyone who follows the hints is in by the floor."""
    rate, clients = 100.0, 2000
    ac = AdmissionControl(rate, 10, rng=random.Random(11))
    queue = [(0.0, c) for c in range(clients)]
    admitted_at: list[float] = []
    attempts = 0
    while queue:
        now, c = heapq.heappop(queue)
        attempts += 1
        hint = ac.try_admit(now)
        if hint is None:
            admitted_at.append(now)
        else:
            heapq.heappush(queue, (now + hint, c))
    assert len(admitted_at) == clients
    assert max(admitted_at) <= clients / rate + 1 / rate
    assert attempts <= 2 * clients


# --- configuration ------------------------------------------------------------------


def test_default_burst_is_a_tenth_of_a_second_of_rate_but_at_least_ten() -> None:
    assert DEFAULT_BURST_SECONDS == 0.1
    assert DEFAULT_MIN_BURST == 10.0
    assert AdmissionControl(1000.0).burst == 100.0
    assert AdmissionControl(20.0).burst == 10.0


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, "rate must be finite and > 0, got 0"),
        ((math.inf,), {}, ValueError, "rate must be finite and > 0, got inf"),
        ((10.0, 0.5), {}, ValueError, "burst must be >= 1 (one whole connection), got 0.5"),
        ((10.0, -2), {}, ValueError, "burst must be finite and > 0, got -2"),
        ((10.0,), {"max_hint": 0.1}, ValueError, "max_hint must be > 1/rate (0.1 s), got 0.1"),
        (("10",), {}, TypeError, "rate must be a number, got str"),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_message(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        AdmissionControl(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("now", [math.nan, math.inf])
def test_a_non_finite_time_is_refused(now: float) -> None:
    with pytest.raises(ValueError, match="now must be a finite time"):
        AdmissionControl(10.0).try_admit(now)
