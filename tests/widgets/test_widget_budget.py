"""Message budgets: the per-widget sliding window and the kernel-wide token bucket."""

from __future__ import annotations

import random

import pytest

from rtnb.widgets.budget import (
    DEFAULT_FPS,
    IOPUB_MSG_RATE_LIMIT,
    KERNEL_MESSAGE_BURST,
    KERNEL_MESSAGE_RATE,
    MessageBudget,
    RateWindow,
    get_budget,
)


def _max_in_any_window(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_rate_window_never_allows_more_than_rate_in_any_second(seed: int) -> None:
    rng = random.Random(seed)
    win = RateWindow(10)
    now, taken = 0.0, []
    for _ in range(20_000):
        now += rng.expovariate(200)  # far more attempts than allowed
        if win.take(now):
            taken.append(now)
    assert _max_in_any_window(taken, 1.0) <= 10
    assert len(taken) >= 0.95 * 10 * now  # and it does not starve either


def test_rate_window_reports_when_the_next_event_is_allowed() -> None:
    win = RateWindow(2)
    assert win.take(0.0) and win.take(0.1)
    assert not win.allows(0.5)
    assert win.next_allowed(0.5) == pytest.approx(1.0)
    assert win.take(1.0)


def test_rate_window_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateWindow(0)


def test_kernel_budget_bounds_every_interval_by_burst_plus_rate() -> None:
    budget = MessageBudget(rate=100, burst=20)
    rng = random.Random(1)
    now, granted = 0.0, []
    for _ in range(50_000):
        now += rng.expovariate(1000)
        if budget.take(now):
            granted.append(now)
    for window in (0.5, 1.0, 3.0):
        assert _max_in_any_window(granted, window) <= 20 + 100 * window + 1
    assert budget.refused > 0


def test_default_budget_stays_far_below_the_iopub_limit() -> None:
    worst = MessageBudget().worst_case_rate(window=3.0)  # Jupyter Server averages over 3 s
    assert worst <= IOPUB_MSG_RATE_LIMIT / 4
    assert KERNEL_MESSAGE_RATE >= 10 * DEFAULT_FPS  # ten busy widgets still run at full fps
    assert KERNEL_MESSAGE_BURST >= 1


def test_there_is_one_budget_per_kernel() -> None:
    assert get_budget() is get_budget()
