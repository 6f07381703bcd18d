"""rtnb's client, slower than the publisher for a while, converges once the publisher
stops (issue 22), on the same connection: its send queue passes the server's cap, the
server reads the topic's events from the log as the socket drains instead of cutting
it — no reconnect, no gap, no snapshot."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rtnb.server import serve
from tests.client.conftest import connect
from tests.conftest import wait_until

CAP = 64 * 1024


def far_behind(runtime: Any) -> bool:
    """A session's topic fell behind by far more than its send queue holds (server loop):
    5,000 events of ~260 bytes, 20 queues."""
    return any(
        catchup.log.latest - catchup.sequence >= 5_000
        for session in runtime.hub.sessions
        for catchup in session.catchup.values()
    )


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_a_client_slow_for_a_while_converges_without_a_reconnect(transport: str) -> None:
    blob = "x" * 200

    def burst(start: int, n: int) -> None:
        srv.publish_many(
            "t", [("x.set", f"e{j % 50}", {"i": j, "blob": blob}) for j in range(start, start + n)],
            tenant="acme",
        )  # fmt: skip

    with serve(
        port=0,
        send_queue_bytes=CAP,
        batch_max_bytes=CAP // 4,
        retention=400_000,
    ) as srv:
        srv.publish("t", "x.set", {"i": 0}, tenant="acme", entity_id="e0")
        conn = connect(srv, transport)
        try:
            topic = conn.subscribe("t")
            wait_until(lambda: topic.freshness.status == "live", timeout=10)
            gate = threading.Event()

            def stuck(event: Any, outcome: str) -> None:  # the runtime thread stops reading
                gate.wait(30)

            remove = topic.on_event(stuck)
            i = 1

            # The server's default heartbeats (5 s): the client's liveness deadline (twice
            # that) is far off while its runtime thread is held here.
            def behind() -> bool:  # far behind (or, before this change, cut)
                return bool(srv.stats()["slow_consumers"] or srv._call(far_behind))

            while not behind():  # the publisher goes on: the queue passes its cap
                assert i < 300_000, "never behind: the test no longer makes a slow consumer"
                burst(i, 500)
                i += 500
            burst(i, 2000)  # and a burst past that, while behind
            remove()
            gate.set()  # the client is fast again; the publisher has stopped
            truth = srv.truth("t", tenant="acme")
            wait_until(lambda: topic.entities == truth, timeout=60, what="the client to converge")
            assert topic.freshness.status == "live"
            assert srv.stats()["slow_consumers"] == 0, "cut instead of caught up"
            summary = conn.log.summary()
            assert summary["reconnects"] == 0
            assert summary["replay"]["gap_unrecoverable"] == 0
            # Nothing replayed: the same connection carried every event, in order.
            assert summary["replay"]["replayed"] == 0
            outcomes = set(conn.log.envelopes["outcome"].astype(str))
            assert "gap_unrecoverable" not in outcomes, outcomes
        finally:
            conn.close()
