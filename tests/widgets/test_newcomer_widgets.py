"""Widget mistakes a newcomer makes: said clearly, once, naming what exists."""

from __future__ import annotations

import gc
import sys
import warnings

import pytest

import rtnb
from rtnb.widgets import Dashboard, StreamTable
from tests.conftest import wait_until

SEVERITIES = ["low", "medium", "high", "critical"]


def test_a_dashboard_on_a_closed_connection_says_so_and_nothing_else(srv, tenant) -> None:
    conn = rtnb.connect(srv.url, token=srv.issue_token(tenant=tenant, user="u"), shared=False)
    conn.close()
    unraisable: list[object] = []
    hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(rtnb.ConnectionClosed, match=r"cannot subscribe to 'items'.*is closed"):
            Dashboard(conn, ["items"])
        gc.collect()  # ipywidgets' __del__ closes the half-made dashboard
    finally:
        sys.unraisablehook = hook
    assert unraisable == []  # was: AttributeError: 'Dashboard' object has no attribute ...


def test_a_misspelled_dashboard_topic_warns_naming_the_topics_there_are(
    recorder, srv, tenant, conn
) -> None:
    srv.publish("fleet", "vehicle.updated", {"speed": 1}, tenant=tenant, entity_id="v1")
    with pytest.warns(UserWarning, match=r"topic 'fleeet' does not exist; topics: fleet, items"):
        dash = Dashboard(conn, ["fleet", "fleeet"])
    dash.close()


def test_a_misspelled_sort_by_column_warns_at_once_when_the_topic_has_data(
    recorder, srv, tenant, conn
) -> None:
    srv.publish("items", "item.updated", {"severity": "low", "n": 1}, tenant=tenant, entity_id="a")
    items = conn.subscribe("items")
    items.wait_for(timeout=10)
    with pytest.warns(UserWarning) as caught:
        StreamTable(items, sort_by="-sevrity", order={"sevirity": SEVERITIES}).close()
    texts = [str(w.message) for w in caught]
    assert any("sort_by column 'sevrity'" in t and "columns: id, n, severity" in t for t in texts)
    assert any("order column 'sevirity'" in t for t in texts)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StreamTable(items, sort_by="-severity", order={"severity": SEVERITIES}).close()
        StreamTable(items, columns=["n"], sort_by="n").close()


def test_a_misspelled_sort_by_column_warns_with_the_first_event_when_there_is_no_data_yet(
    recorder, srv, tenant, conn
) -> None:
    items = conn.subscribe("items")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = StreamTable(items, sort_by="sevrity")
        assert caught == []
        srv.publish("items", "item.updated", {"severity": "low"}, tenant=tenant, entity_id="a")
        wait_until(lambda: caught, 10, what="the warning")
        srv.publish("items", "item.updated", {"severity": "high"}, tenant=tenant, entity_id="b")
        items.wait_for("severity == 'high'", timeout=10)
    table.close()
    assert [str(w.message) for w in caught] == [
        "StreamTable('items'): sort_by column 'sevrity' is not a field of this topic's "
        "entities; columns: id, severity"
    ]


def test_a_column_order_must_be_a_list_of_values(recorder, conn) -> None:
    items = conn.subscribe("items")
    with pytest.raises(ValueError, match=r"order\['severity'\] must be a non-empty list"):
        StreamTable(items, order={"severity": "low"})
    with pytest.raises(ValueError, match="lists a value twice"):
        StreamTable(items, order={"severity": ["low", "low"]})


def test_a_pandas_ordered_categorical_gives_a_column_its_order(recorder, conn) -> None:
    import pandas as pd

    items = conn.subscribe("items")
    table = StreamTable(items, order={"severity": pd.CategoricalDtype(SEVERITIES, ordered=True)})
    assert table.order == {"severity": SEVERITIES}
    table.close()
