"""StreamTable on a real server and connection, with a recording comm instead of a browser."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from typing import Any

import pytest

import rtnb
from rtnb.server import ServerHandle
from rtnb.widgets import Action, StreamTable
from rtnb.widgets.rows import FLAG_PENDING
from tests.conftest import wait_until
from tests.helpers import send_from_browser
from tests.widgets.conftest import Sent


def _hello(widget: Any) -> None:
    """What the browser sends when a view renders."""
    send_from_browser(widget, {"t": "hello"})


def _rows(msgs: list[Sent]) -> dict[str, list[Any]]:
    """The table as the browser would hold it after these messages."""
    rows: dict[str, list[Any]] = {}
    for m in msgs:
        if m.kind == "snapshot":
            rows = {}
        if m.kind in ("snapshot", "diff"):
            for row in m.data.get("u", []):
                rows[row[0]] = row
            for eid in m.data.get("d", []):
                rows.pop(eid, None)
    return rows


def _seed(srv: ServerHandle, tenant: str, topic: str, n: int) -> None:
    srv.publish_many(
        topic, [("item.updated", f"e{i}", {"n": 0, "name": f"item {i}"}) for i in range(n)],
        tenant=tenant,
    )  # fmt: skip


@pytest.mark.slow
def test_nothing_is_sent_before_the_widget_is_displayed(recorder, srv, conn, tenant) -> None:
    _seed(srv, tenant, "items", 5)
    table = StreamTable(conn.subscribe("items"))
    wait_until(lambda: len(conn.topics["items"].entities) == 5)
    time.sleep(0.3)  # several ticks: a widget nobody displayed sends nothing
    assert recorder.of(table) == []
    _hello(table)
    snap = recorder.wait(table, lambda ms: [m for m in ms if m.kind == "snapshot"])[0]
    assert snap.content["seq"] == 1
    assert len(snap.data["u"]) == 5
    assert snap.content["columns"] == ["n", "name"]
    assert snap.content["fresh"]["status"] == "live"
    table.close()


def test_only_changed_rows_are_sent(recorder, srv, conn, tenant) -> None:
    _seed(srv, tenant, "items", 100)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 100)
    table = StreamTable(topic)
    table._repr_mimebundle_()
    recorder.wait(table, lambda ms: [m for m in ms if m.kind == "snapshot"])
    start = len(recorder.of(table))
    for k in range(1, 4):
        for eid in ("e3", "e50", "e99"):
            srv.publish("items", "item.updated", {"n": k}, tenant=tenant, entity_id=eid)
    wait_until(lambda: topic.get("e99") == {"n": 3, "name": "item 99"})
    recorder.wait(table, lambda ms: _rows(ms).get("e99", [None, None, None])[2] == 3)
    later = recorder.of(table)[start:]
    assert all(m.kind == "diff" for m in later)
    assert set().union(*(m.upserted for m in later)) == {"e3", "e50", "e99"}
    assert len(later) <= 3 * 3  # batched: never more messages than events
    assert _rows(recorder.of(table))["e50"] == ["e50", 0, 3, "item 50"]
    table.close()


@pytest.mark.slow
def test_messages_per_second_never_exceed_fps_at_10k_events_per_second(
    recorder, srv, conn, tenant
) -> None:
    _seed(srv, tenant, "fast", 1000)
    topic = conn.subscribe("fast")
    wait_until(lambda: len(topic.entities) == 1000)
    table = StreamTable(topic, fps=10)
    table._repr_mimebundle_()
    stop = threading.Event()
    published = [0]

    def produce() -> None:  # 10,000 events/s in batches of 100 every 10 ms
        t0, k = time.monotonic(), 0
        while not stop.is_set():
            batch = [("item.updated", f"e{(k * 100 + i) % 1000}", {"n": k}) for i in range(100)]
            srv.publish_many("fast", batch, tenant=tenant)
            published[0] += 100
            k += 1
            time.sleep(max(0.0, t0 + k * 0.01 - time.monotonic()))

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(3.0)
    finally:
        stop.set()
        producer.join()
    truth = srv.truth("fast", tenant=tenant)
    wait_until(lambda: topic.entities == truth, timeout=20)
    final = {eid: [eid, 0, state["n"], state["name"]] for eid, state in truth.items()}
    # the final state reaches the "browser" once the stream stops
    recorder.wait(table, lambda ms: _rows(ms) == final, timeout=10)
    times = [m.at for m in recorder.of(table)]
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 10, f"{worst} messages in one second (fps=10)"
    # No speed assertion here: the events/s the reference server sustains into a
    # connected table is a figure of bench/widgets.py ("events/s" column).
    assert published[0] >= 100
    table.close()


@pytest.mark.slow
def test_a_hello_gets_a_full_snapshot_with_the_next_sequence_number(
    recorder, srv, conn, tenant
) -> None:
    _seed(srv, tenant, "items", 10)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 10)
    table = StreamTable(topic)
    _hello(table)
    recorder.wait(table, lambda ms: ms)
    srv.publish("items", "item.updated", {"n": 7}, tenant=tenant, entity_id="e1")
    recorder.wait(table, lambda ms: any("e1" in m.upserted for m in ms if m.kind == "diff"))
    _hello(table)  # e.g. a second view, or the page was reloaded
    msgs = recorder.wait(table, lambda ms: ms if ms[-1].kind == "snapshot" else None)
    assert [m.content["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    assert len(msgs[-1].data["u"]) == 10
    assert _rows(msgs)["e1"][2] == 7
    table.close()


def test_deleted_entities_are_sent_as_deletes(recorder, srv, conn, tenant) -> None:
    _seed(srv, tenant, "items", 3)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 3)
    table = StreamTable(topic)
    _hello(table)
    recorder.wait(table, lambda ms: ms)
    srv.publish("items", "item.deleted", {}, tenant=tenant, entity_id="e1")
    recorder.wait(table, lambda ms: any("e1" in m.deleted for m in ms))
    assert set(_rows(recorder.of(table))) == {"e0", "e2"}
    table.close()


def test_max_rows_keeps_the_most_recently_changed(recorder, srv, conn, tenant) -> None:
    _seed(srv, tenant, "items", 20)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 20)
    table = StreamTable(topic, max_rows=5)
    _hello(table)
    recorder.wait(table, lambda ms: ms)
    assert set(_rows(recorder.of(table))) == {f"e{i}" for i in range(15, 20)}
    srv.publish("items", "item.updated", {"n": 1}, tenant=tenant, entity_id="e2")
    recorder.wait(table, lambda ms: "e2" in _rows(ms))
    assert set(_rows(recorder.of(table))) == {"e2", "e16", "e17", "e18", "e19"}
    table.close()


def test_explicit_columns_are_sent_in_order(recorder, srv, conn, tenant) -> None:
    _seed(srv, tenant, "items", 2)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 2)
    table = StreamTable(topic, columns=["name", "missing"])
    _hello(table)
    snap = recorder.wait(table, lambda ms: ms)[0]
    assert snap.content["columns"] == ["name", "missing"]
    assert sorted(snap.data["u"]) == [["e0", 0, "item 0", None], ["e1", 0, "item 1", None]]
    table.close()


@pytest.mark.slow
def test_a_pending_mutation_is_flagged_and_a_rejected_one_rolls_back_with_its_error(
    recorder, srv, tenant
) -> None:
    token = srv.issue_token(tenant=tenant, user="ana", role="operator")
    conn = rtnb.connect(srv.url, token=token, timeout=10)
    srv.publish(
        "incidents", "incident.opened", {"status": "resolved", "title": "t"},
        tenant=tenant, entity_id="inc-1",
    )  # fmt: skip
    topic = conn.subscribe("incidents")
    wait_until(lambda: topic.get("inc-1"))
    table = StreamTable(topic)
    _hello(table)
    recorder.wait(table, lambda ms: ms)
    srv.chaos.set(delay_ms=(400, 400))  # hold the confirmation back, so "pending" is seen
    try:
        ok = topic.mutate("inc-1", {"title": "renamed"})
        recorder.wait(table, lambda ms: _rows(ms)["inc-1"][1] & FLAG_PENDING)
        ok.wait(5)
    finally:
        srv.chaos.set()
    assert ok.status == "confirmed"
    recorder.wait(table, lambda ms: not _rows(ms)["inc-1"][1] & FLAG_PENDING)
    bad = topic.mutate("inc-1", {"status": "open"}).wait(5)  # operators cannot re-open
    assert bad.status == "rejected"
    msgs = recorder.wait(table, lambda ms: [m for m in ms if m.content.get("rejected")])
    rejection = msgs[0].content["rejected"][0]
    assert rejection["id"] == "inc-1"
    assert rejection["patch"] == {"status": "open"}
    assert "admin" in rejection["error"]
    row = _rows(recorder.of(table))["inc-1"]  # rolled back: server state, not pending
    columns = next(m for m in recorder.of(table) if m.kind == "snapshot").content["columns"]
    assert row[2 + columns.index("status")] == "resolved" and not row[1] & FLAG_PENDING
    table.close()
    conn.close()


def test_row_actions_mutate_only_where_they_apply(recorder, srv, conn, tenant) -> None:
    for i, status in enumerate(("open", "ack")):
        srv.publish(
            "incidents", "incident.opened", {"status": status}, tenant=tenant, entity_id=f"inc-{i}"
        )
    topic = conn.subscribe("incidents")
    wait_until(lambda: len(topic.entities) == 2)
    ack = Action("Acknowledge", {"status": "ack"}, when={"status": "open"})
    table = StreamTable(topic, actions=[ack, {"label": "Resolve", "patch": {"status": "resolved"}}])
    assert table.action_labels == ["Acknowledge", "Resolve"]
    _hello(table)
    snap = recorder.wait(table, lambda ms: ms)[0]
    flags = {row[0]: row[1] for row in snap.data["u"]}
    assert flags == {"inc-0": 0b110, "inc-1": 0b100}  # bit 1: Acknowledge, bit 2: Resolve
    send_from_browser(table, {"t": "act", "id": "inc-1", "action": 0})  # not open
    recorder.wait(table, lambda ms: [m for m in ms if m.content.get("notices")])
    assert srv.truth("incidents", tenant=tenant)["inc-1"]["status"] == "ack"
    send_from_browser(table, {"t": "act", "id": "inc-0", "action": 0})
    wait_until(lambda: srv.truth("incidents", tenant=tenant)["inc-0"]["status"] == "ack")
    send_from_browser(table, {"t": "act", "id": "inc-0", "action": 99})  # ignored
    table.close()


@pytest.mark.slow
def test_all_widgets_of_a_kernel_share_one_budget(recorder, srv, conn, tenant) -> None:
    from rtnb.widgets.budget import MessageBudget

    _seed(srv, tenant, "items", 50)
    topic = conn.subscribe("items")
    wait_until(lambda: len(topic.entities) == 50)
    budget = MessageBudget(rate=20, burst=5)
    tables = [StreamTable(topic, fps=10) for _ in range(8)]  # would be 80 msgs/s
    for t in tables:
        t._feed.budget = budget
        _hello(t)
    stop = time.monotonic() + 2.0
    k = 0
    while time.monotonic() < stop:
        srv.publish("items", "item.updated", {"n": k}, tenant=tenant, entity_id=f"e{k % 50}")
        k += 1
        time.sleep(0.005)
    # `alive` keep-alives are outside the budget by design (a table the budget starves
    # for 1 s still tells the page the kernel lives): count only what the budget governs.
    sent = [m for t in tables for m in recorder.of(t)]
    times = sorted(m.at for m in sent if m.kind != "alive")
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 5 + 20 + 1
    assert budget.refused > 0
    for t in tables:
        t.close()


@pytest.mark.slow
def test_esm_is_a_string_and_a_closed_widget_can_be_collected(recorder, conn) -> None:
    assert isinstance(StreamTable._esm, str)
    assert 'from "./common.js"' not in StreamTable._esm
    assert "export default" in StreamTable._esm
    table = StreamTable(conn.subscribe("items"))
    feed = table._feed
    ref = weakref.ref(table)
    table.close()
    del table
    gc.collect()
    assert ref() is None
    wait_until(lambda: feed.closed)


def test_bad_arguments_are_refused_with_a_clear_message(conn) -> None:
    with pytest.raises(TypeError, match="topic handle"):
        StreamTable("incidents")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns"):
        StreamTable(conn.subscribe("items"), columns="name")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        StreamTable(conn.subscribe("items"), fps=0)
    with pytest.raises(TypeError, match="label"):
        StreamTable(conn.subscribe("items"), actions=[{"patch": {}}])
