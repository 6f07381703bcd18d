"""Freshness pill and dashboard counters, kernel side, with a recording comm."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

import rtnb
from rtnb.widgets import Counters, Dashboard, Freshness
from rtnb.widgets.status import FRESH_DRIFT, same_freshness
from tests.conftest import wait_until
from tests.helpers import send_from_browser
from tests.widgets.conftest import Sent


def _last_fresh(msgs: list[Sent]) -> dict[str, Any] | None:
    fresh = [m.content["fresh"] for m in msgs if m.kind == "fresh"]
    return fresh[-1] if fresh else None


@pytest.mark.slow
def test_pill_goes_stale_then_reconnecting_on_disconnect_and_back_to_live(
    recorder, srv, tenant
) -> None:
    token = srv.issue_token(tenant=tenant, user="ana", role="viewer")
    conn = rtnb.connect(srv.url, token=token, timeout=10)
    srv.publish("items", "item.updated", {"n": 1}, tenant=tenant, entity_id="e1")
    conn.subscribe("items")
    pill = Freshness(conn)
    send_from_browser(pill, {"t": "hello"})
    recorder.wait(pill, lambda ms: (_last_fresh(ms) or {}).get("status") == "live")
    srv.chaos.disconnect_all()
    stale = recorder.wait(
        pill,
        lambda ms: [m.content["fresh"] for m in ms if m.kind == "fresh"
                    and m.content["fresh"]["status"] == "stale"],
    )[0]  # fmt: skip
    assert stale["conn"] in ("reconnecting", "degraded", "connecting")
    assert stale["last"] is not None  # "data as of hh:mm:ss"
    recorder.wait(pill, lambda ms: (_last_fresh(ms) or {}).get("status") == "live", timeout=30)
    history = _last_fresh(recorder.of(pill))["history"]
    statuses = [h["status"] for h in history]
    assert "degraded" in statuses and "reconnecting" in statuses
    assert statuses[-1] == "subscribed"
    pill.close()
    conn.close()


def test_topic_pill_reports_forbidden(recorder, srv, tenant) -> None:
    srv.declare("audit-w", "admin")
    token = srv.issue_token(tenant=tenant, user="vi", role="viewer")
    conn = rtnb.connect(srv.url, token=token)
    topic = conn.subscribe("audit-w")
    pill = Freshness(topic)
    send_from_browser(pill, {"t": "hello"})
    recorder.wait(pill, lambda ms: (_last_fresh(ms) or {}).get("status") == "forbidden")
    assert pill.scope == "topic" and pill.label == "audit-w"
    pill.close()
    conn.close()


def test_age_is_not_resent_while_the_browser_can_extrapolate_it() -> None:
    base = {"status": "live", "last": 100.0, "age": 0.1, "history": [], "lag": 3.0}
    assert same_freshness(base, {**base, "age": 9.0})  # the browser ticks the age itself
    assert same_freshness(base, {**base, "last": 100.0 + FRESH_DRIFT / 2})
    assert not same_freshness(base, {**base, "last": 100.0 + FRESH_DRIFT * 2})
    assert not same_freshness(base, {**base, "status": "stale"})
    assert not same_freshness(None, base)


@pytest.mark.slow
def test_counters_count_events_and_duplicates(recorder, srv, conn, tenant) -> None:
    topic = conn.subscribe("items")
    counters = Counters(conn)
    send_from_browser(counters, {"t": "hello"})
    srv.chaos.set(duplicate=1.0)
    try:
        for i in range(20):
            srv.publish("items", "item.updated", {"n": i}, tenant=tenant, entity_id="e1")
        wait_until(lambda: topic.get("e1") == {"n": 19})
        msgs = recorder.wait(
            counters,
            lambda ms: [m for m in ms if m.kind == "counters"
                        and m.content["counters"]["duplicates"] >= 20],
        )  # fmt: skip
    finally:
        srv.chaos.set()
    figures = msgs[-1].content["counters"]
    assert set(figures) >= {"eps", "duplicates", "gaps", "degraded"}
    times = [m.at for m in recorder.of(counters)]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(times))  # 1 per second
    counters.close()


def test_dashboard_lays_out_freshness_counters_and_one_table_per_topic(recorder, conn) -> None:
    dash = Dashboard(conn, ["incidents", "items"])
    assert [t.topic_name for t in dash.tables] == ["incidents", "items"]
    assert dash.role == "operator"
    incidents, items = dash.tables
    assert [a.label for a in incidents.actions] == ["Acknowledge", "Resolve"]
    assert items.actions == ()
    assert set(conn.topics) == {"incidents", "items"}
    dash.close()
    wait_until(lambda: not conn.topics)


def test_a_dashboards_pill_steps_aside_for_a_standalone_pill_of_its_connection(
    recorder, conn, srv, tenant
) -> None:
    """The model side of "one pill per connection in a cell": the browser hides an
    embedded pill when a standalone pill with the same source key shares its output."""
    other = rtnb.connect(srv.url, token=srv.issue_token(tenant=tenant, user="bo", role="viewer"))
    dash = Dashboard(conn, ["incidents"])
    mine, theirs = Freshness(conn), Freshness(other)
    topic_pill = Freshness(dash.tables[0].topic)
    assert dash.freshness.embedded and not mine.embedded and not theirs.embedded
    assert dash.freshness.source_key == mine.source_key == topic_pill.source_key != ""
    assert theirs.source_key != mine.source_key
    assert topic_pill.scope == "topic"  # a topic's pill never shadows the connection's
    (state,) = [p["traits"] for p in dash.get_state()["parts"] if p["kind"] == "freshness"]
    assert state["embedded"] is True and state["source_key"] == mine.source_key
    for w in (dash, mine, theirs, topic_pill):
        w.close()
    other.close()


def test_dashboard_offers_no_actions_to_a_viewer(recorder, srv, tenant) -> None:
    token = srv.issue_token(tenant=tenant, user="vi", role="viewer")
    conn = rtnb.connect(srv.url, token=token)
    dash = Dashboard(conn, ["incidents"])
    assert dash.role == "viewer"
    assert dash.tables[0].actions == ()
    dash.close()
    conn.close()


@pytest.mark.slow
def test_widgets_read_a_replay_like_a_live_connection(recorder, srv, tenant, tmp_path) -> None:
    token = srv.issue_token(tenant=tenant, user="ana", role="operator")
    conn = rtnb.connect(srv.url, token=token, timeout=10)
    path = tmp_path / "session.parquet"
    rec = conn.record(path, roll_interval=0.5)
    topic = conn.subscribe("items")
    for i in range(5):
        srv.publish("items", "item.updated", {"n": i}, tenant=tenant, entity_id=f"e{i}")
    wait_until(lambda: len(topic.entities) == 5)
    conn.close()
    rec.stop()
    rep = rtnb.replay(rtnb.EnvelopeLog.read_parquet(path), speed=None)
    from rtnb.widgets import StreamTable

    table = StreamTable(rep.subscribe("items"))
    pill = Freshness(rep)
    dash = Dashboard(rep, ["items"])
    assert dash.tables[0].actions == ()  # a replay cannot mutate
    send_from_browser(table, {"t": "hello"})
    send_from_browser(pill, {"t": "hello"})
    assert rep.wait(30)
    recorder.wait(
        table,
        lambda ms: {r[0] for m in ms for r in m.data.get("u", [])} >= {f"e{i}" for i in range(5)},
    )
    recorder.wait(pill, lambda ms: _last_fresh(ms))
    for w in (table, pill, dash):
        w.close()
    rep.close()
