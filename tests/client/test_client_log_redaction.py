"""A client-only process logging at DEBUG writes no token, token fragment or cursor.

websockets logs every frame at DEBUG, shortened to its head and tail: the tail
of an ``authenticate`` frame is the token's signature. Before issue 17 only
``rtnb.server`` installed the redaction, so a process that never imported the
server logged the last 21 signature characters of its token.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rtnb.server import ServerHandle

CLIENT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
    import rtnb
    url, token, transport = sys.argv[1:4]
    conn = rtnb.connect(url, token=token, transport=transport, shared=False)
    topic = conn.subscribe("incidents")
    conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=10)
    deadline = __import__("time").monotonic() + 10
    while topic.get("e") is None and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.02)
    assert topic.get("e") is not None, "no event arrived"
    conn.close()
    assert not any(m.startswith("rtnb.server") for m in sys.modules), "imported the server"
    print("OK", flush=True)
    """
)


@pytest.mark.parametrize("transport", ["websocket", "sse", "polling"])
def test_a_client_only_process_logs_no_token_fragment_at_debug(
    srv: ServerHandle, transport: str
) -> None:
    event = srv.publish("incidents", "x.set", {"v": 1}, tenant="acme", entity_id="e")
    token = srv.issue_token(tenant="acme", user="ana", role="viewer")
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, srv.url, token, transport],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "OK" in proc.stdout, proc.stderr[-3000:]
    logs = proc.stderr
    assert len(logs) > 1000, "the client logged at DEBUG"
    signature = token.rsplit(".", 1)[1]
    for secret in (token, signature[-21:], signature[:21], event.replay_token):
        assert secret not in logs, f"{secret[:6]}… found in the client's DEBUG log"
