"""The demo's tables read well: incidents newest first, timestamps to the second, one pill a cell."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

import rtnb
from rtnb.widgets import Dashboard
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_a_dashboard_sorts_incidents_newest_first_and_other_topics_as_they_come(
    recorder: object, conn: rtnb.Connection
) -> None:
    dash = Dashboard(conn, ["incidents", "items"])
    try:
        incidents, items = dash.tables
        assert incidents.sort_by == "-openedAt" and items.sort_by is None
    finally:
        dash.close()


def test_demo_incidents_carry_timestamps_to_the_second() -> None:
    with rtnb.serve(port=0, demo={"tenants": ["t"], "rates": {"incidents": 50.0}}) as srv:
        wait_until(lambda: len(srv.truth("incidents", tenant="t")) >= 4, timeout=30)
        incidents = srv.truth("incidents", tenant="t")
    stamps = [v["openedAt"] for v in incidents.values()]
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in stamps), (
        stamps
    )


def test_no_notebook_cell_shows_two_freshness_pills_for_one_connection() -> None:
    """A Dashboard's header holds its connection's pill: no Freshness(conn) beside it.

    (The widgets would cope -- a dashboard's pill steps aside for a standalone one in the
    same output, see ``test_one_freshness_pill_per_connection_in_a_cell`` -- but the
    shipped notebooks say it once.)"""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or "Dashboard(" not in cell.source:
                continue
            dashboards = set(re.findall(r"Dashboard\((\w+)", cell.source))
            pills = set(re.findall(r"Freshness\((\w+)\)", cell.source))
            assert not dashboards & pills, (path.name, cell.source)
