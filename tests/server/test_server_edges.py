"""Edges of the reference server: secrets in URLs, how a cut SSE stream ends, and
where ``rtnb serve`` prints a token (issue 16, item 6)."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rtnb.protocol.retry import retry_hint_in_reason
from rtnb.protocol.sse import SSEParser
from rtnb.server.http import secret_param
from tests.subproc import free_port

# -- the token-in-URL guard -----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "access_token%20={t}",  # a trailing space, percent-encoded
        "%20access_token={t}",
        "access%5Ftoken={t}",  # the underscore encoded
        "access%255Ftoken={t}",  # encoded twice
        "Access-Token={t}",
        "ACCESS_TOKEN={t}",
        "access_token[]={t}",
        "%EF%BC%B4%EF%BC%AF%EF%BC%AB%EF%BC%A5%EF%BC%AE={t}",  # fullwidth TOKEN
        "jwt%09={t}",
        "Last-Event-ID={t}",
        "replay_from={t}",
    ],
)
@pytest.mark.parametrize("path", ["/sse", "/poll", "/snapshot"])
def test_a_secret_in_the_url_is_refused_however_its_name_is_spelled(srv, path, query):
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="ana")
    url = f"{srv.url}{path}?topic=c&" + query.format(t=token)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url, headers=headers, timeout=5) as response:  # /sse: a stream
        assert response.status_code == 400, (query, response.status_code)
        response.read()
    assert response.json()["code"] == "token_in_url"
    assert token not in response.text


def test_ordinary_parameter_names_are_not_mistaken_for_secrets():
    for name in ("topic", "wait", "tokens_total", "topics", "author"):
        assert not secret_param(name), name


# -- SSE: a cut stream says why, and when to come back ------------------------------------


def test_an_sse_consumer_cut_as_slow_gets_an_error_event_with_the_reason_and_a_retry_hint(
    make_server, wait_until
):
    # The peer reads nothing until the kernel's socket buffers are full, its queue passes
    # its cap (the topic then falls behind: read from the log as the socket drains) and
    # the log's retention passes its position; then it reads everything left.
    srv = make_server(
        send_queue_bytes=512 * 1024,
        batch_max_bytes=16 * 1024,
        batch_max_messages=16,
        retention=1_000,
    )
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="slow")
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    sock.sendall(
        b"GET /sse?topic=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    wait_until(lambda: srv.stats()["open_sessions"] == 1, what="the SSE session")
    blob = "x" * 4096
    sent = 0
    while srv.stats()["slow_consumers"] == 0:  # the peer does not read meanwhile
        assert sent < 20_000, "the SSE consumer was never cut"
        srv.publish_many("c", [("x.set", "e", {"blob": blob})] * 5, tenant="acme")
        sent += 5
    data = b""  # now read what is left: the stream ends, its last event says why
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    sock.close()
    body = data.split(b"\r\n\r\n", 1)[1]
    parser = SSEParser()
    events = [e for e in parser.feed(_unchunk(body)) if e.type != "message"]
    last = events[-1]
    assert last.type == "error"
    frame = json.loads(last.data)
    assert frame["code"] == "slow_consumer"
    assert "slow consumer" in frame["message"] and "retention" in frame["message"]
    assert retry_hint_in_reason(frame["message"]) == 1.0
    assert parser.retry == 1000  # the WHATWG reconnection time, for EventSource clients


def _unchunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body (the stream may end mid-chunk: kept)."""
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


# -- where `rtnb serve` prints a token ----------------------------------------------------


def _serve(tmp_path: Path, *args: str, tty: bool) -> str:
    """The lines `rtnb serve ARGS` prints up to "Ctrl-C to stop.", then SIGINT."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RTNB_SECRET", None)
    argv = [sys.executable, "-m", "rtnb", "serve", "--port", str(free_port()), *args]
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
    else:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        master = proc.stdout.fileno()
    out = b""
    try:
        deadline = time.monotonic() + 60
        while b"Ctrl-C to stop." not in out:
            assert time.monotonic() < deadline, out
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                chunk = os.read(master, 4096)
                assert chunk, out
                out += chunk
    finally:
        proc.send_signal(2)
        proc.wait(30)
        if tty:
            os.close(master)
        elif proc.stdout is not None:
            proc.stdout.close()
    return out.decode().replace("\r\n", "\n")


@pytest.mark.slow
def test_rtnb_serve_prints_a_token_only_for_a_demo_or_a_terminal(tmp_path):
    data = str(tmp_path / "d")
    logged = _serve(tmp_path, "--data", data, tty=False)  # systemd, Docker: stdout is a log
    assert "eyJ" not in logged, logged
    assert "no token printed" in logged and f"rtnb token --data {data}" in logged
    at_terminal = _serve(tmp_path, "--data", data, tty=True)
    assert "demo token" in at_terminal and "eyJ" in at_terminal
    demo = _serve(tmp_path, "--demo", tty=False)
    assert "demo token" in demo and "eyJ" in demo


@pytest.mark.parametrize("query", ["token={t}", "access%5Ftoken={t}", "Last-Event-ID={t}"])
def test_a_secret_in_the_websocket_url_is_refused_with_a_reason_and_not_echoed(srv, query):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    token = srv.issue_token(tenant="acme", user="ana")
    url = srv.url.replace("http://", "ws://") + "/ws?" + query.format(t=token)
    with connect(url, open_timeout=5) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert closed.value.rcvd.reason.startswith("token_in_url")
    assert token not in closed.value.rcvd.reason
    assert srv.stats()["connections"] == 0  # refused before it counted as a connection


def test_a_websocket_url_without_secrets_still_connects(srv):
    from websockets.sync.client import connect

    url = srv.url.replace("http://", "ws://") + "/ws?topic=c"
    with connect(url, open_timeout=5) as ws:
        ws.send(json.dumps({"op": "ping"}))
        assert ws.recv(timeout=5)  # unauthenticated, but open: an answer, not a 4400 close
