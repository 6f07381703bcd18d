"""Continuity: replay after a drop, gap recovery, snapshot fallback — never silent."""

from __future__ import annotations

import pytest

import rtnb
from rtnb.server import ServerHandle, serve
from tests.client.conftest import HEARTBEAT, connect, publish
from tests.conftest import wait_until


def _outcomes(conn: rtnb.Connection) -> dict[str, int]:
    return dict(conn.log.counts)


def _converged(topic: rtnb.Topic, srv: ServerHandle, name: str = "incidents") -> bool:
    return topic.server_entities == srv.truth(name, tenant="acme")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_events_missed_while_disconnected_are_replayed(srv: ServerHandle, transport: str) -> None:
    publish(srv, 5)
    conn = connect(srv, transport)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: _converged(topic, srv))
        srv.chaos.disconnect_all()
        wait_until(lambda: conn.state.status is not rtnb.Status.SUBSCRIBED)
        publish(srv, 20, start=5)  # while the client is away
        conn.wait_for("subscribed", 15)
        wait_until(lambda: _converged(topic, srv))
        counts = _outcomes(conn)
        assert counts["replayed"] >= 1
        assert counts["gap_unrecoverable"] == 0
        states = list(conn.log.states["status"].astype(str))
        assert "degraded" in states and "reconnecting" in states
    finally:
        conn.close()


# Polling reads the log on every request, so the server has no push to drop.
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_dropped_events_are_recovered_by_a_targeted_resubscribe(
    srv: ServerHandle, transport: str
) -> None:
    conn = connect(srv, transport)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        srv.chaos.set(drop=0.3)
        publish(srv, 60)
        srv.chaos.set()
        # The last events may be the dropped ones: heartbeats reveal the tail gap.
        wait_until(lambda: _converged(topic, srv), timeout=15)
        assert srv.chaos.counts["dropped"] > 0
        applied = conn.log.envelopes
        ok = applied[applied["outcome"].isin(["applied", "replayed"])]
        assert sorted(ok["sequence"]) == list(range(1, 61))  # each applied exactly once
        assert topic._state.gaps >= 1
    finally:
        conn.close()


@pytest.mark.slow
def test_replay_beyond_retention_falls_back_to_a_snapshot_and_logs_the_loss() -> None:
    with serve(port=0, heartbeat_interval=HEARTBEAT, retention=5) as srv:
        publish(srv, 3)
        conn = connect(srv)
        try:
            topic = conn.subscribe("incidents")
            wait_until(lambda: _converged(topic, srv))
            srv.chaos.disconnect_all()
            wait_until(lambda: conn.state.status is not rtnb.Status.SUBSCRIBED)
            publish(srv, 30, start=3)  # far beyond the 5 retained events
            conn.wait_for("subscribed", 15)
            wait_until(lambda: _converged(topic, srv))
            env = conn.log.envelopes
            lost = env[env["outcome"] == "gap_unrecoverable"]
            # one row for the range 4..33
            assert list(zip(lost["sequence"], lost["count"], strict=True)) == [(4, 30)]
            assert topic.freshness.unrecoverable == 30 == conn.log.unrecoverable
            assert topic.freshness.status == "live"
        finally:
            conn.close()


@pytest.mark.slow
def test_a_server_restart_without_data_replaces_state_from_a_new_snapshot(
    srv: ServerHandle,
) -> None:
    publish(srv, 10)
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: _converged(topic, srv))
        srv.chaos.restart(keep_data=False)
        srv.declare("incidents")
        publish(srv, 2)
        conn.wait_for("subscribed", 20)
        wait_until(lambda: _converged(topic, srv), timeout=10)
        assert len(topic) == 2
        assert conn.log.counts["gap_unrecoverable"] >= 1
    finally:
        conn.close()


@pytest.mark.slow
def test_a_server_restart_with_data_keeps_replay_working(tmp_path: object) -> None:
    with serve(port=0, heartbeat_interval=HEARTBEAT, data=str(tmp_path)) as srv:
        srv.declare("incidents")
        publish(srv, 10)
        conn = connect(srv)
        try:
            topic = conn.subscribe("incidents")
            wait_until(lambda: _converged(topic, srv))
            srv.chaos.restart(keep_data=True)
            publish(srv, 5, start=10)
            conn.wait_for("subscribed", 20)
            wait_until(lambda: _converged(topic, srv), timeout=10)
            assert conn.log.counts["gap_unrecoverable"] == 0
        finally:
            conn.close()


@pytest.mark.slow
def test_a_silent_network_cut_degrades_then_recovers(srv: ServerHandle) -> None:
    conn = connect(srv)
    try:
        topic = conn.subscribe("incidents")
        wait_until(lambda: topic.freshness.status == "live")
        srv.chaos.stall(seconds=3 * HEARTBEAT * 2)
        wait_until(lambda: topic.freshness.status == "stale", timeout=10)
        reasons = " ".join(conn.log.states["reason"])
        assert "no heartbeat" in reasons or "heartbeat" in reasons
        conn.wait_for("subscribed", 20)
        publish(srv, 3)
        wait_until(lambda: _converged(topic, srv))
    finally:
        conn.close()
