"""Negotiated liveness against the real server, on every transport.

The client is left at its default heartbeat assumption (or given a wrong one):
whatever it stalls or idles on, the deadline must be the one the *server*
announced (``authenticated.heartbeatInterval``; the first SSE event and the
first message of each poll response on the HTTP transports).
"""

from __future__ import annotations

import time

import pytest

import rtnb
from rtnb.core.machine import Timer
from rtnb.core.machine_table import liveness_deadline
from rtnb.server import serve
from tests.client.conftest import TRANSPORTS, publish
from tests.conftest import wait_until


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_silent_stall_is_shown_stale_within_two_server_intervals(transport: str) -> None:
    interval = 0.5
    with serve(port=0, heartbeat_interval=interval) as srv:
        srv.declare("incidents")
        publish(srv, 3)
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        # No heartbeat_interval: the client's own assumption (5 s) would take 10.5 s.
        conn = rtnb.connect(srv.url, token=token, transport=transport, shared=False)
        try:
            topic = conn.subscribe("incidents")
            wait_until(lambda: topic.status == "live", 10)
            machine = conn._session.machine
            wait_until(lambda: machine.heartbeat_interval_announced, 5)
            assert machine.heartbeat_interval == interval
            # Let a heartbeat (or poll response) through after subscribing, then cut.
            seen = len(conn.log.heartbeats)
            wait_until(lambda: len(conn.log.heartbeats) > seen, 5)
            stalled_at = time.time()
            srv.chaos.stall(6.0)
            wait_until(lambda: topic.status == "stale", 10)
            states = conn.log.states
            degraded = states[(states["status"] == "degraded")]
            assert len(degraded) >= 1
            first = degraded.iloc[0]
            shown_after = first["at"].timestamp() - stalled_at
            assert shown_after <= 2 * interval + 1.0, (shown_after, first["reason"])
            assert f"every {interval:g} s" in first["reason"]
            assert topic.freshness.connection != "subscribed"
        finally:
            conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_slow_heartbeat_server_is_not_declared_dead_early(transport: str) -> None:
    """Server at 30 s, client *told* 0.5 s: without negotiation it would degrade in 1.1 s."""
    with serve(port=0, heartbeat_interval=30.0) as srv:
        srv.declare("incidents")
        publish(srv, 2)
        token = srv.issue_token(tenant="acme", user="ana", role="operator")
        conn = rtnb.connect(
            srv.url, token=token, transport=transport, heartbeat_interval=0.5, shared=False
        )
        try:
            topic = conn.subscribe("incidents")
            wait_until(lambda: topic.status == "live", 10)
            machine = conn._session.machine
            wait_until(lambda: machine.heartbeat_interval_announced, 5)
            assert machine.heartbeat_interval == 30.0
            assert machine.heartbeat_deadline == liveness_deadline(30.0, 2)
            assert machine.timers[Timer.HEARTBEAT] > time.time() + 30.0
            # Three quiet seconds, checked continuously: the connection stays live
            # (the assumed 0.5 s would have tripped at 1.1 s, and again every retry).
            quiet_until = time.monotonic() + 3.0
            while time.monotonic() < quiet_until:
                assert conn.status is rtnb.Status.SUBSCRIBED, conn.state
                assert topic.status == "live"
                time.sleep(0.05)
            assert "degraded" not in set(conn.log.states["status"])
        finally:
            conn.close()
