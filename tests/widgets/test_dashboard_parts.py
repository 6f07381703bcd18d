"""The Dashboard is one widget: its parts talk through it, each tagged with its own id."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import anywidget
import ipywidgets  # type: ignore[import-untyped]

import rtnb
from rtnb.widgets import Dashboard
from tests.conftest import wait_until
from tests.widgets.conftest import Recorder


def _parts(msgs: list[Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in msgs:
        out.setdefault(str(m.content.get("part")), set()).add(m.kind)
    return out


def test_a_dashboard_is_one_anywidget_not_a_box_of_widgets(
    recorder: Recorder, conn: rtnb.Connection
) -> None:
    dash = Dashboard(conn, ["incidents", "items"])
    try:
        assert isinstance(dash, anywidget.AnyWidget)
        assert not isinstance(dash, ipywidgets.Box)
        parts = dash.get_state()["parts"]
        assert [(p["id"], p["kind"]) for p in parts] == [
            ("fresh", "freshness"), ("counters", "counters"), ("t0", "table"), ("t1", "table"),
        ]  # fmt: skip
        assert parts[2]["traits"]["action_labels"] == ["Acknowledge", "Resolve"]
        assert parts[2]["traits"]["sort_by"] == "-openedAt"
    finally:
        dash.close()


def test_each_part_answers_its_own_hello_with_messages_tagged_by_its_id(
    recorder: Recorder, conn: rtnb.Connection, srv: rtnb.ServerHandle, tenant: str
) -> None:
    srv.publish("incidents", "incident.opened", {"status": "open"}, tenant=tenant, entity_id="i1")
    dash = Dashboard(conn, ["incidents"])
    try:
        for part in ("fresh", "counters", "t0"):  # each part's view says hello (marimo, Panel:
            dash._handle_custom_msg({"t": "hello", "part": part}, [])  # no _repr_mimebundle_)
        got = recorder.wait(
            dash,
            lambda ms: (p := _parts(ms)).get("fresh") and p.get("counters") and p.get("t0") and p,
        )
        assert got["fresh"] == {"fresh"} and got["counters"] == {"counters"}
        assert "snapshot" in got["t0"]
        assert set(got) == {"fresh", "counters", "t0"}  # nothing untagged
        table = [m for m in recorder.of(dash) if m.content.get("part") == "t0"]
        assert "i1" in table[0].upserted
    finally:
        dash.close()


def test_a_row_action_on_a_dashboard_table_mutates_through_the_dashboard(
    recorder: Recorder, conn: rtnb.Connection, srv: rtnb.ServerHandle, tenant: str
) -> None:
    srv.publish("incidents", "incident.opened", {"status": "open"}, tenant=tenant, entity_id="i2")
    dash = Dashboard(conn, ["incidents"])
    try:
        topic = dash.tables[0].topic
        assert topic is not None
        wait_until(lambda: topic.get("i2") is not None, 10)
        dash._handle_custom_msg({"t": "act", "part": "t0", "id": "i2", "action": 0}, [])
        wait_until(lambda: srv.truth("incidents", tenant=tenant)["i2"]["status"] == "ack", 10)
        dash._handle_custom_msg({"t": "act", "part": "nope", "id": "i2", "action": 1}, [])
        dash._handle_custom_msg({"t": "act", "part": "fresh", "id": "i2", "action": 1}, [])
        assert srv.truth("incidents", tenant=tenant)["i2"]["status"] == "ack"  # ignored
    finally:
        dash.close()


def test_a_closed_dashboard_stops_its_parts_feeds_and_can_be_collected(
    recorder: Recorder, conn: rtnb.Connection
) -> None:
    dash = Dashboard(conn, ["incidents"])
    feeds = [p.feed for p in (dash.freshness, dash.counters, *dash.tables)]
    dash._handle_custom_msg({"t": "hello", "part": "t0"}, [])
    ref = weakref.ref(dash)
    dash.close()
    del dash
    gc.collect()
    assert ref() is None  # parts hold the dashboard weakly: no cycle keeps it
    wait_until(lambda: all(f is not None and f.closed for f in feeds), 10)
    assert not conn.topics  # the topics it subscribed were released
