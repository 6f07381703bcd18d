"""The Dashboard is one widget: its parts talk through it, each tagged with its own id."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import anywidget
import ipywidgets  # type: ignore[import-untyped]
import pytest

import rtnb
from rtnb.widgets import Dashboard
from tests.conftest import wait_until
from tests.helpers import send_from_browser
from tests.widgets.conftest import Recorder


def _parts(msgs: list[Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m in msgs:
        if m.kind == "alive":  # keep-alives: any part may send one at any time
            continue
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
            send_from_browser(dash, {"t": "hello", "part": part})  # no _repr_mimebundle_)
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
        send_from_browser(dash, {"t": "act", "part": "t0", "id": "i2", "action": 0})
        wait_until(lambda: srv.truth("incidents", tenant=tenant)["i2"]["status"] == "ack", 10)
        send_from_browser(dash, {"t": "act", "part": "nope", "id": "i2", "action": 1})
        send_from_browser(dash, {"t": "act", "part": "fresh", "id": "i2", "action": 1})
        assert srv.truth("incidents", tenant=tenant)["i2"]["status"] == "ack"  # ignored
    finally:
        dash.close()


def test_a_closed_dashboard_stops_its_parts_feeds_and_can_be_collected(
    recorder: Recorder, conn: rtnb.Connection
) -> None:
    dash = Dashboard(conn, ["incidents"])
    feeds = [p.feed for p in (dash.freshness, dash.counters, *dash.tables)]
    send_from_browser(dash, {"t": "hello", "part": "t0"})
    ref = weakref.ref(dash)
    dash.close()
    del dash
    gc.collect()
    assert ref() is None  # parts hold the dashboard weakly: no cycle keeps it
    wait_until(lambda: all(f is not None and f.closed for f in feeds), 10)
    assert not conn.topics  # the topics it subscribed were released


def _front_end_traits(cls: type) -> set[str]:
    """The synced traits ``cls`` adds to every rtnb widget's (what its front end reads)."""
    from rtnb.widgets.base import RtnbWidget

    return set(cls.class_traits(sync=True)) - set(RtnbWidget.class_traits(sync=True))


def test_each_part_carries_every_trait_its_standalone_widget_syncs(
    recorder: Recorder, conn: rtnb.Connection
) -> None:
    from rtnb.widgets import Counters, Freshness, StreamTable

    dash = Dashboard(conn, ["items"])
    try:
        kinds = {p["kind"]: set(p["traits"]) for p in dash.get_state()["parts"]}
        assert kinds["table"] == _front_end_traits(StreamTable)  # e.g. order (i20)
        assert kinds["freshness"] == _front_end_traits(Freshness)
        assert kinds["counters"] == _front_end_traits(Counters)
    finally:
        dash.close()


def test_every_part_keeps_the_kernel_alive_and_answers_its_own_ping(
    recorder: Recorder, conn: rtnb.Connection
) -> None:
    dash = Dashboard(conn, ["items"])
    try:
        dash._repr_mimebundle_()  # displayed: every part's feed runs
        # nothing changes: each part still says "alive" within its keep-alive (1 s)
        got = recorder.wait(
            dash,
            lambda ms: (
                {m.content.get("part") for m in ms if m.kind == "alive"}
                >= {"fresh", "counters", "t0"}
            ),
            timeout=15,
        )
        assert got
        sent = recorder.of(dash)
        assert all(isinstance(m.content.get("ka"), float) for m in sent)  # every message
        assert all(m.content.get("part") in {"fresh", "counters", "t0"} for m in sent)
        pinged: list[str] = []
        for part in (dash.freshness, dash.counters, *dash.tables):
            assert part.feed is not None
            part.feed.ping = lambda pid=part.id: pinged.append(pid)  # type: ignore[method-assign]
        send_from_browser(dash, {"t": "ping", "part": "t0"})  # a tab woke up
        assert pinged == ["t0"]  # answered by that part's feed at its next tick
    finally:
        dash.close()


def test_stale_after_makes_a_silent_dashboard_topic_quiet(
    recorder: Recorder, conn: rtnb.Connection, srv: rtnb.ServerHandle, tenant: str
) -> None:
    srv.publish("items", "item.updated", {"n": 1}, tenant=tenant, entity_id="a")
    items = conn.subscribe("items")
    dash = Dashboard(conn, [items], stale_after=0.5)  # a handle: the dashboard holds its own
    try:
        wait_until(lambda: items.freshness.status == "quiet", 10)
    finally:
        dash.close()
    assert "items" in conn.topics  # the caller's handle is still subscribed
    with pytest.raises(ValueError, match="stale_after"):
        Dashboard(conn, ["items"], stale_after=0)


def test_a_dashboards_counters_and_tables_have_recorded_twins(
    recorder: Recorder, conn: rtnb.Connection, srv: rtnb.ServerHandle, tenant: str
) -> None:
    srv.publish("items", "item.updated", {"n": 7}, tenant=tenant, entity_id="a")
    dash = Dashboard(conn, ["items"])
    try:
        wait_until(lambda: len(dash.tables[0].topic or ()) == 1, 10)
        table = conn.call(lambda: dash._render_part("t0"), what="test")
        counters = conn.call(lambda: dash._render_part("counters"), what="test")
        assert "Recorded" in table and "not live" in table and ">a<" in table and "1 rows" in table
        assert "counters" in counters and "Recorded" in counters
        assert conn.call(lambda: dash._render_part("fresh"), what="test") == ""
    finally:
        dash.close()
