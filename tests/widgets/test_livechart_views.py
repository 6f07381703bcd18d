"""LiveChart refreshes while any view of it exists, wherever it is shown (a VBox child too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtnb.telemetry import EnvelopeLog
from rtnb.widgets import budget as budget_module
from rtnb.widgets.budget import MessageBudget
from rtnb.widgets.livechart import LiveChart
from tests.conftest import wait_until

T0 = 1_790_000_000.0


def _append(log: EnvelopeLog, start: int, n: int) -> None:
    for i in range(start, start + n):
        t = T0 + i * 0.01
        log.append_envelope(
            t, t - 0.004, "fleet", "vehicle.updated", f"e{i}", i, "v1", 0, "websocket", 0, 300
        )


@pytest.fixture
def fresh_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[MessageBudget]:
    shared = MessageBudget()
    monkeypatch.setattr(budget_module, "_budget", shared)
    yield shared


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
    _append(log, 0, 20)
    chart = LiveChart(log, "lag", interval=1.0)  # never displayed directly: a VBox child
    try:
        _append(log, 20, 10)
        assert not chart._active.is_set()
        chart._handle_custom_msg({"event": "view"}, [])  # what a rendered view sends
        wait_until(lambda: chart.refreshes >= 1, timeout=10)
        chart._handle_custom_msg({"event": "view"}, [])  # a second view (another cell)
        chart._handle_custom_msg({"event": "unview"}, [])
        assert chart._active.is_set(), "one view is still on screen"
        chart._handle_custom_msg({"event": "unview"}, [])  # the last view was removed
        assert not chart._active.is_set()
        refreshes = chart.refreshes
        _append(log, 30, 10)
        assert chart.refresh() is True and chart.refreshes == refreshes + 1  # by hand still
    finally:
        chart.close()
    wait_until(lambda: not chart._thread.is_alive(), timeout=10)
