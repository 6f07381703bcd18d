"""LiveChart refreshes while any view of it exists, wherever it is shown (a VBox child too)."""

from __future__ import annotations

from rtnb.telemetry import EnvelopeLog
from rtnb.widgets.budget import MessageBudget
from rtnb.widgets.livechart import LiveChart
from tests.conftest import wait_until
from tests.helpers import send_from_browser
from tests.widgets.livechart_data import append_rows


def test_the_front_end_reports_each_view_and_its_removal() -> None:
    chart = LiveChart(EnvelopeLog(), "lag")
    try:
        assert 'send({event: "view"})' in chart._esm and 'send({event: "unview"})' in chart._esm
        assert "esm.sh" not in chart._esm and len(chart._esm) > 500_000, "offline: vega bundled"
    finally:
        chart.close()


def test_a_view_inside_a_container_starts_the_refreshes_and_its_removal_stops_them(
    fresh_budget: MessageBudget,
) -> None:
    log = EnvelopeLog()
    append_rows(log, 0, 20)
    chart = LiveChart(log, "lag", interval=1.0)  # never displayed directly: a VBox child
    try:
        append_rows(log, 20, 10)
        assert not chart._active.is_set()
        send_from_browser(chart, {"event": "view"})  # what a rendered view sends
        wait_until(lambda: chart.refreshes >= 1, timeout=10)
        send_from_browser(chart, {"event": "view"})  # a second view (another cell)
        send_from_browser(chart, {"event": "unview"})
        assert chart._active.is_set(), "one view is still on screen"
        send_from_browser(chart, {"event": "unview"})  # the last view was removed
        assert not chart._active.is_set()
        refreshes = chart.refreshes
        append_rows(log, 30, 10)
        assert chart.refresh() is True and chart.refreshes == refreshes + 1  # by hand still
    finally:
        chart.close()
    wait_until(lambda: not chart._thread.is_alive(), timeout=10)
