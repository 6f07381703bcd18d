"""rtnb's client, slower than the publisher for a while, converges once the publisher
stops (issue 22): cut as a slow consumer, it resumes from its cursor and its replay —
larger than the server's send queue — is streamed as it reads, not cut again."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from rtnb.server import serve
from tests.client.conftest import connect
from tests.conftest import wait_until

CAP = 64 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["sse", "websocket"])
def test_a_client_slow_for_a_while_converges_to_the_truth(transport: str) -> None:
    blob = "x" * 200
    with serve(port=0, send_queue_bytes=CAP, batch_max_bytes=CAP // 4) as srv:
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
            while srv.stats()["slow_consumers"] == 0:  # the publisher goes on: cut
                assert i < 200_000, "never cut: the test no longer makes a slow consumer"
                srv.publish_many(
                    "t", [("x.set", f"e{j % 50}", {"i": j, "blob": blob}) for j in range(i, i + 500)],
                    tenant="acme",
                )  # fmt: skip
                i += 500
            srv.publish_many(
                "t", [("x.set", f"e{j % 50}", {"i": j, "blob": blob}) for j in range(i, i + 2000)],
                tenant="acme",
            )  # fmt: skip
            remove()
            gate.set()  # the client is fast again; the publisher has stopped
            truth = srv.truth("t", tenant="acme")
            wait_until(lambda: topic.entities == truth, timeout=30, what="the client to converge")
            assert topic.freshness.status == "live"
            env = conn.log.envelopes
            assert "gap_unrecoverable" not in set(env["outcome"].astype(str))
        finally:
            conn.close()
