"""``Topic.wait_for``: the README's first lines wait for data instead of hoping it is there."""

from __future__ import annotations

import threading
import time

import pytest

import rtnb
from tests.client.conftest import connect


def test_wait_for_returns_the_matching_rows_once_an_event_brings_them(srv) -> None:
    conn = connect(srv)
    incidents = conn.subscribe("incidents")
    srv.publish("incidents", "incident.updated", {"status": "ack"}, tenant="acme", entity_id="a")
    publisher = threading.Thread(
        target=srv.publish,
        args=("incidents", "incident.updated", {"status": "open"}),
        kwargs={"tenant": "acme", "entity_id": "b"},
    )
    publisher.start()
    try:
        rows = incidents.wait_for("status == 'open'", timeout=10)
    finally:
        publisher.join()
        conn.close()
    assert list(rows.index) == ["b"]


def test_wait_for_without_a_query_waits_for_any_row_and_takes_a_function(srv) -> None:
    srv.publish("fleet", "vehicle.updated", {"speed": 3}, tenant="acme", entity_id="veh-1")
    conn = connect(srv)
    fleet = conn.subscribe("fleet")
    try:
        assert list(fleet.wait_for().index) == ["veh-1"]
        assert len(fleet.wait_for(lambda df: (df.speed > 2).any())) == 1
    finally:
        conn.close()


def test_wait_for_times_out_naming_the_topic_its_columns_and_why_the_query_failed(srv) -> None:
    srv.publish("incidents", "incident.updated", {"status": "open"}, tenant="acme", entity_id="a")
    conn = connect(srv)
    incidents = conn.subscribe("incidents")
    incidents.wait_for(timeout=10)
    started = time.monotonic()
    with pytest.raises(rtnb.WaitTimeout) as err:
        incidents.wait_for("stauts == 'open'", timeout=0.3)
    conn.close()
    assert time.monotonic() - started < 5
    text = str(err.value)
    assert "topic 'incidents'" in text and "within 0.3 s" in text
    assert "columns: status" in text and "stauts" in text


def test_wait_for_on_an_unknown_topic_says_so_at_once(srv) -> None:
    conn = connect(srv)
    nope = conn.subscribe("no-such-topic")
    with pytest.raises(rtnb.LocalProtocolError, match="no-such-topic"):
        nope.wait_for(timeout=10)
    conn.close()


def test_wait_for_on_a_closed_connection_raises_connection_closed(srv) -> None:
    conn = connect(srv)
    incidents = conn.subscribe("incidents")
    conn.close()
    with pytest.raises(rtnb.ConnectionClosed, match="incidents"):
        incidents.wait_for(timeout=10)


def test_wait_for_inside_a_callback_says_it_cannot_block_there(srv) -> None:
    conn = connect(srv)
    incidents = conn.subscribe("incidents")
    errors: list[str] = []
    called = threading.Event()

    def callback(_event: object, _outcome: str) -> None:
        try:
            incidents.wait_for(timeout=1)
        except rtnb.LocalProtocolError as exc:
            errors.append(str(exc))
        finally:
            called.set()

    incidents.on_event(callback)
    deadline = time.monotonic() + 10  # live first: an event in the snapshot calls no callback
    while incidents.freshness.status != "live":
        assert time.monotonic() < deadline, incidents.freshness
        time.sleep(0.01)
    srv.publish("incidents", "incident.updated", {"status": "open"}, tenant="acme", entity_id="a")
    # the rows are visible before the callbacks of the same event have run: wait for it
    assert called.wait(10), "the on_event callback never ran"
    conn.close()
    assert errors and "cannot run in an rtnb callback" in errors[0]
