"""LiveChart: redraws in place, rarely, only with new data, within the shared message budget."""

from __future__ import annotations

import math

import pytest

from rtnb.telemetry import EnvelopeLog
from rtnb.widgets.budget import MessageBudget
from rtnb.widgets.livechart import LiveChart
from tests.conftest import wait_until
from tests.widgets.livechart_data import append_rows


@pytest.mark.slow
def test_a_refresh_happens_only_when_the_log_has_new_rows(fresh_budget: MessageBudget) -> None:
    log = EnvelopeLog()
    append_rows(log, 0, 50)
    chart = LiveChart(log, "outcomes")
    try:
        assert chart.refresh() is False, "nothing new since the chart was built"
        append_rows(log, 50, 10)
        assert chart.refresh() is True
        assert chart.refresh() is False
        assert chart.refreshes == 1 and fresh_budget.granted == 1
        assert chart.spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    finally:
        chart.close()


@pytest.mark.slow
def test_a_refresh_waits_when_the_shared_budget_is_spent(fresh_budget: MessageBudget) -> None:
    log = EnvelopeLog()
    append_rows(log, 0, 20)
    chart = LiveChart(log, "lag")
    try:
        while fresh_budget.take():  # other widgets used the whole budget
            pass
        append_rows(log, 20, 5)
        assert chart.refresh() is False and chart.skipped == 1
        fresh_budget._tokens = 1.0
        assert chart.refresh() is True, "the skipped change goes out on a later tick"
    finally:
        chart.close()


@pytest.mark.slow
def test_once_displayed_it_refreshes_itself_and_stops_when_closed(
    fresh_budget: MessageBudget,
) -> None:
    log = EnvelopeLog()
    append_rows(log, 0, 20)
    chart = LiveChart(log, "timeline", interval=1.0)
    chart._repr_mimebundle_()
    append_rows(log, 20, 20)
    wait_until(lambda: chart.refreshes >= 1, timeout=10)
    chart.close()
    wait_until(lambda: not chart._thread.is_alive(), timeout=10)


@pytest.mark.slow  # 60,000 rows: ~5 s (make test-fast skips it)
def test_the_window_shows_only_recent_history() -> None:
    log = EnvelopeLog()
    append_rows(log, 0, 60_000)  # 600 s of data
    chart = LiveChart(log, "outcomes", window=60)
    try:
        rows = [r for d in chart.spec["datasets"].values() for r in d if "t" in r]
        first = min(r["t"] for r in rows)
        assert first >= "2026-09-21T14:22:19"  # T0 + 540 s, less part of a bin
        assert sum(r["envelopes"] for r in rows) == pytest.approx(6_000, abs=200)
    finally:
        chart.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "pie"}, "kind must be one of"),
        ({"interval": 0.2}, "at most one update a second"),
        ({"window": 0}, "window must be > 0"),
        ({"window": math.nan}, "window must be > 0"),
    ],
)
def test_bad_options_are_refused_with_what_is_allowed(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LiveChart(EnvelopeLog(), **kwargs)  # type: ignore[arg-type]
