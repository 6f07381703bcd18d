"""Memory bounded per identity (issue 16, item 4b): a cap on one identity's
connections, and every HTTP answer bounded in bytes.

The attack: one viewer token opens many SSE streams on a large topic and reads
none of them. Measured on a subprocess server's RSS: without the cap each
stream pinned its whole snapshot (2 MiB here); now at most
``max_connections_per_identity`` streams exist, each holding one snapshot part.
"""

from __future__ import annotations

import contextlib
import json
import socket

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from rtnb.protocol.retry import retry_hint_in_reason
from rtnb.server.config import DEFAULT_MAX_CONNECTIONS_PER_IDENTITY
from tests.server.test_server_limits import _subprocess_server


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_one_identity_is_capped_over_websocket_and_others_are_not(make_server, connect, wait_until):
    srv = make_server(max_connections_per_identity=3)
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="ana")
    held = [connect(srv, token) for _ in range(3)]  # authenticated
    extra = connect(srv)
    extra.send({"op": "authenticate", "token": token})
    error = extra.expect("error")
    assert error["code"] == "too_many_connections" and "64" not in error["message"]
    assert "max_connections_per_identity" in error["message"]
    code, reason = extra.closed()
    assert code == 4429 and retry_hint_in_reason(reason) == 5.0
    assert srv.stats()["identity_capped"] == 1
    # Another user of the same tenant is not charged for ana's connections.
    bo = srv.issue_token(tenant="acme", user="bo")
    assert connect(srv).authenticate(bo)["op"] == "authenticated"
    # Re-authenticating in-band on a held connection is not a new connection.
    assert held[0].authenticate(token)["op"] == "authenticated"
    held[0].close()  # a slot frees once a connection ends
    wait_until(lambda: _authenticates(connect(srv), token), timeout=10, what="a slot to free")


def _authenticates(client, token) -> bool:
    client.send({"op": "authenticate", "token": token})
    try:
        return bool(client.recv()["op"] == "authenticated")
    except ConnectionClosed:
        return False


def test_streams_and_requests_count_until_their_answer_is_sent(make_server, wait_until):
    srv = make_server(max_connections_per_identity=2)
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="ana")
    with httpx.Client(base_url=srv.url, timeout=10) as http, contextlib.ExitStack() as stack:
        for _ in range(2):
            stream = stack.enter_context(
                http.stream("GET", "/sse", params={"topic": "c"}, headers=_auth(token))
            )
            assert stream.status_code == 200
        for path, params in (("/sse", {"topic": "c"}), ("/poll", {"topic": "c"})):
            with http.stream("GET", path, params=params, headers=_auth(token)) as refused:
                refused.read()
            assert refused.status_code == 429, path
            assert refused.json()["code"] == "too_many_connections"
            assert refused.headers["retry-after"] == "5"
        other = srv.issue_token(tenant="acme", user="bo")
        assert http.get("/poll", params={"topic": "c"}, headers=_auth(other)).status_code == 200
    # The streams ended: their slots are free again.
    wait_until(
        lambda: httpx.get(f"{srv.url}/poll?topic=c", headers=_auth(token)).status_code == 200,
        timeout=10,
        what="the slots to be released",
    )


def test_a_snapshot_over_one_frame_is_413_and_a_subscription_gets_it_in_parts(make_server):
    srv = make_server()
    blob = "x" * 4000
    srv.publish_many(
        "big", [("x.set", f"e{i}", {"blob": blob}) for i in range(400)], tenant="acme"
    )  # ~1.6 MB
    token = srv.issue_token(tenant="acme", user="ana")
    response = httpx.get(f"{srv.url}/snapshot?topic=big", headers=_auth(token), timeout=10)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and "subscribe" in response.json()["message"]
    assert len(response.content) < 1024
    polled = httpx.get(f"{srv.url}/poll?topic=big", headers=_auth(token), timeout=10)
    parts = [m for m in polled.json()["messages"] if m["op"] == "snapshot"]
    assert len(parts) > 1 and [p["more"] for p in parts][-1] is False
    assert sum(len(p["entities"]) for p in parts) == 400
    assert all(len(json.dumps(p)) <= 1024 * 1024 for p in parts)


def test_a_poll_answer_carries_at_most_send_queue_bytes_of_events_and_the_rest_next(make_server):
    limit = 64 * 1024
    srv = make_server(send_queue_bytes=limit, batch_max_bytes=16 * 1024)
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="ana")
    first = httpx.get(f"{srv.url}/poll?topic=c", headers=_auth(token), timeout=10).json()
    blob = "x" * 1000
    srv.publish_many("c", [("x.set", f"e{i}", {"blob": blob}) for i in range(300)], tenant="acme")
    cursor, seen, answers = first["cursor"], [], 0
    while len(seen) < 300:
        answers += 1
        assert answers < 50, "the polls never delivered everything"
        response = httpx.get(
            f"{srv.url}/poll?topic=c", headers={**_auth(token), "Last-Event-ID": cursor}, timeout=10
        )
        assert len(response.content) <= limit + 2048, len(response.content)
        body = response.json()
        seen += [m["sequence"] for m in body["messages"] if m["op"] == "event"]
        cursor = body["cursor"]
    assert seen == list(range(1, 301)) and answers >= 5


@pytest.mark.slow
def test_one_identity_opening_many_unread_streams_is_bounded_in_server_memory(wait_until):
    """150 SSE streams on a 2 MiB topic, none read: 300 MiB pinned without the cap."""
    attempts = 150
    cap = DEFAULT_MAX_CONNECTIONS_PER_IDENTITY
    with _subprocess_server("--topic-bytes", str(2 * 1024 * 1024)) as server:
        before = server.stats()["rss"]
        socks = []
        try:
            for _ in range(attempts):
                sock = socket.create_connection((server.host, server.port), timeout=10)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(
                    b"GET /sse?topic=big HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {server.viewer}\r\n\r\n".encode()
                )
                socks.append(sock)
            wait_until(
                lambda: server.stats()["identity_capped"] >= attempts - cap,
                timeout=30,
                what="the streams over the cap to be refused",
            )
            stats = server.stats()
            assert stats["open_sessions"] <= cap
            grown = stats["rss"] - before
            assert grown < 64 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
        finally:
            for sock in socks:
                sock.close()
