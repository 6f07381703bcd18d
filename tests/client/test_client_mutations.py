"""Optimistic mutations end to end: confirm, reject, timeout, late confirmation, queueing."""

from __future__ import annotations

import pytest

import rtnb
from rtnb.server import ServerHandle
from tests.client.conftest import TRANSPORTS, connect
from tests.conftest import wait_until


def _open_incident(srv: ServerHandle, entity: str = "inc-1") -> None:
    srv.publish(
        "incidents",
        "incident.opened",
        {"status": "open", "severity": 2, "service": "checkout"},
        tenant="acme",
        entity_id=entity,
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_confirmed_mutation_stays_and_is_logged(srv: ServerHandle, transport: str) -> None:
    _open_incident(srv)
    conn = connect(srv, transport)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        m = topic.mutate("inc-1", {"status": "ack"})
        assert m.wait(10).status == "confirmed"
        wait_until(lambda: topic.get("inc-1") == srv.truth("incidents", tenant="acme")["inc-1"])
        assert topic.get("inc-1")["status"] == "ack"
        rows = conn.log.mutations
        assert list(rows["outcome"].astype(str)) == ["confirmed"]
        assert rows["latency_ms"].iloc[0] > 0
    finally:
        conn.close()


def test_a_viewer_mutation_is_rejected_and_rolled_back(srv: ServerHandle) -> None:
    _open_incident(srv)
    conn = connect(srv, role="viewer")
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        m = topic.mutate("inc-1", {"status": "ack"})
        m.wait(10)
        assert m.status == "rejected" and m.error_code == "forbidden"
        assert m.error
        assert topic.get("inc-1")["status"] == "open"
        assert "_pending" not in topic.get("inc-1")
        with pytest.raises(rtnb.client.mutation.MutationError, match="rejected"):
            m.wait(1, raise_on_failure=True)
    finally:
        conn.close()


@pytest.mark.slow
def test_the_overlay_shows_a_pending_change_at_once_and_survives_a_network_cut(
    srv: ServerHandle,
) -> None:
    _open_incident(srv)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        srv.chaos.stall(seconds=2)  # the mutation is lost in the cut; it is re-sent after
        m = topic.mutate("inc-1", {"status": "ack"}, timeout=30)
        view = topic.get("inc-1")
        assert view == {
            "status": "ack",
            "severity": 2,
            "service": "checkout",
            "_pending": True,
        }
        assert topic.df.loc["inc-1", "_pending"]
        assert m.wait(20).status == "confirmed"
    finally:
        conn.close()


@pytest.mark.slow
def test_a_timed_out_mutation_rolls_back_and_a_late_confirmation_is_reconciled(
    srv: ServerHandle,
) -> None:
    _open_incident(srv)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        srv.chaos.set(delay_ms=(800, 800))  # the confirmation arrives, but late
        m = topic.mutate("inc-1", {"status": "ack"}, timeout=0.3)
        m.wait(5)
        assert m.status == "timed_out"
        assert topic.get("inc-1") in (
            {"status": "open", "severity": 2, "service": "checkout"},
            srv.truth("incidents", tenant="acme")["inc-1"],
        )
        wait_until(lambda: m.status == "late_confirmation", timeout=20)
        wait_until(lambda: topic.get("inc-1")["status"] == "ack")
        outcomes = list(conn.log.mutations["outcome"].astype(str))
        assert outcomes == ["timed_out", "late_confirmation"]
    finally:
        conn.close()


@pytest.mark.slow
def test_mutations_made_while_degraded_queue_and_are_sent_after_reconnect(
    srv: ServerHandle,
) -> None:
    _open_incident(srv)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        srv.chaos.disconnect_all()
        wait_until(lambda: conn.state.status is rtnb.Status.RECONNECTING)
        m = topic.mutate("inc-1", {"status": "ack"}, timeout=30)
        assert m.status == "queued"
        assert topic.get("inc-1")["_pending"] is True
        assert m.wait(20).status == "confirmed"
        rows = conn.log.mutations
        assert bool(rows["while_degraded"].iloc[0]) is True
    finally:
        conn.close()


def test_the_reject_policy_refuses_mutations_while_degraded(srv: ServerHandle) -> None:
    _open_incident(srv)
    conn = connect(srv, on_degraded="reject")
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: len(topic) == 1)
        srv.chaos.disconnect_all()
        wait_until(lambda: conn.state.status is rtnb.Status.RECONNECTING)
        m = topic.mutate("inc-1", {"status": "ack"})
        assert m.status == "refused" and m.done and "degraded" in (m.error or "")
        assert "_pending" not in topic.get("inc-1")
    finally:
        conn.close()


def test_bad_mutation_arguments_are_caller_errors(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        with pytest.raises(ValueError, match="patch must be a non-empty dict"):
            topic.mutate("inc-1", {})
        other = conn.subscribe("fleet")
        other.unsubscribe()
        with pytest.raises(ValueError, match="not subscribed"):
            other.mutate("v-1", {"status": "x"})
    finally:
        conn.close()
