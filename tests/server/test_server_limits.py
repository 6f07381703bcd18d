"""No client can grow the server without bound: every limit against a misbehaving client.

Each test plays the hostile peer with a plain client (raw socket, ``websockets``
or ``httpx``) against a real server on a free port; the ones that measure or
starve the process run the server in a subprocess (``_limits_server.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from rtnb.server import ServerHandle
from rtnb.server.config import FD_RESERVE
from rtnb.server.runner import ACCEPT_BACKLOG, connection_cap, listen

SERVER_SCRIPT = Path(__file__).with_name("_limits_server.py")


def _on_loop(srv: ServerHandle, fn: Any) -> Any:
    """Run ``fn()`` on the server's event loop (for uvicorn's per-connection state)."""
    inc = srv._inc
    assert inc is not None

    async def call() -> Any:
        return fn(inc.server.server_state)

    return asyncio.run_coroutine_threadsafe(call(), inc.loop).result(5)


def _raw(srv: ServerHandle) -> socket.socket:
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    return sock


def _closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the server closes the socket; return what it sent. Fails on timeout."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        except TimeoutError:
            break
        if not chunk:
            return data
        data += chunk
    pytest.fail(f"the server did not close the socket within {timeout} s")


# -- send queue bounded by bytes ----------------------------------------------------------


def _big_topic(srv: ServerHandle, topic: str, size: int) -> None:
    blob = "x" * 4000
    srv.publish_many(
        topic, [("x.set", f"e{i}", {"blob": blob}) for i in range(size // 4096)], tenant="acme"
    )


@pytest.mark.slow
def test_a_viewer_looping_snapshots_without_reading_is_cut_by_bytes(
    make_server, connect, wait_until
):
    limit = 1024 * 1024
    srv = make_server(send_queue_bytes=limit, snapshot_rate=None, rate_limit=None)
    _big_topic(srv, "big", 256 * 1024)  # each snapshot is ~256 KiB
    slow = connect(srv, srv.issue_token(tenant="acme", user="slow"), max_queue=1)
    peak = 0
    sent = 0
    with contextlib.suppress(ConnectionClosed):
        while srv.stats()["slow_consumers"] == 0:
            assert sent < 2000, "the consumer was never cut (500 MiB of snapshots asked for)"
            slow.send({"op": "snapshot", "topic": "big"})
            sent += 1
            peak = max(
                peak,
                srv._call(lambda rt: max((s.queued_bytes for s in rt.hub.sessions), default=0)),
            )
    # the bound: the limit plus at most one run (one snapshot) accepted onto an empty queue
    assert peak <= limit + 300 * 1024, peak
    code, reason = None, ""
    try:
        while True:
            slow.ws.recv(timeout=5)
    except ConnectionClosed as exc:
        if exc.rcvd:
            code, reason = exc.rcvd.code, exc.rcvd.reason
    assert code in (1013, None)  # 1013 if the close frame got through the full buffers
    if code == 1013:
        assert reason.startswith("slow consumer") and "bytes" in reason
    wait_until(lambda: srv.stats()["open_sessions"] == 0, what="the slow session to be gone")


@pytest.mark.slow
def test_snapshot_floods_are_bounded_in_server_memory(wait_until):
    """The issue's case at small scale: 1 MiB snapshots asked for 400 times, never read.

    Unbounded, that is 400 MiB queued; the server's RSS must grow by far less.
    """
    with _subprocess_server("--topic-bytes", str(1024 * 1024), "snapshot_rate=null") as server:
        before = server.stats()["rss"]
        from websockets.sync.client import connect as ws_connect

        with ws_connect(server.ws_url, max_queue=1, open_timeout=5) as ws:
            ws.send(json.dumps({"op": "authenticate", "token": server.viewer}))
            with contextlib.suppress(ConnectionClosed):
                for _ in range(400):
                    ws.send(json.dumps({"op": "snapshot", "topic": "big"}))
                    if server.stats()["slow_consumers"]:
                        break
            # Cut as a slow consumer, or served as fast as it reads: snapshots are streamed
            # part by part (snapshots.py), so a flooder that reads at all is not cut.
            grown = server.stats()["rss"] - before
        assert grown < 64 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"


@pytest.mark.slow
def test_an_sse_consumer_that_stops_reading_is_cut_and_its_socket_released(make_server, wait_until):
    # Cut once the log's retention passes its position (past its queue's cap the topic
    # fell behind: read from the log as the socket drains, which it never does).
    srv = make_server(send_queue_bytes=512 * 1024, write_timeout=2.0, retention=1_000)
    srv.declare("c")
    token = srv.issue_token(tenant="acme", user="slow")
    sock = _raw(srv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        f"GET /sse?topic=c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    wait_until(lambda: srv.stats()["open_sessions"] == 1, what="the SSE session")
    blob = "x" * 4096
    sent = 0
    while srv.stats()["slow_consumers"] == 0:
        assert sent < 20_000, "the SSE consumer was never cut"
        srv.publish_many("c", [("x.set", "e", {"blob": blob})] * 50, tenant="acme")
        sent += 50
    assert srv.stats()["open_sessions"] == 0, "a cut SSE session is detached at once"
    # The stream ended; the peer still does not read, so the write deadline frees the socket.
    wait_until(lambda: srv.stats()["write_timeouts"] >= 1, what="the stalled response aborted")
    _closed_by_server(sock, timeout=30)
    sock.close()


def test_snapshots_and_resubscribes_are_rate_limited_per_connection(make_server, connect):
    srv = make_server(snapshot_rate=(1.0, 5.0))
    srv.declare("c")
    for op in ("snapshot", "subscribe"):
        client = connect(srv, srv.issue_token(tenant="acme", user=f"loop-{op}"))
        # The server may close (4429) before the client has written all ten.
        with contextlib.suppress(ConnectionClosed):
            for _ in range(10):
                client.send({"op": op, "topic": "c"})
        frames = client.until(lambda f: f["op"] == "error")
        assert frames[-1]["code"] == "rate_limited"
        code, reason = client.closed()
        assert code == 4429 and "retry_after=" in reason, (code, reason)
    polite = connect(srv, srv.issue_token(tenant="acme", user="polite"))
    assert polite.subscribe("c")[0]["replay"] == "none", "other connections are not charged"


# -- deep nesting ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_a_ws_frame_nested_too_deeply_is_a_bad_frame_and_the_read_loop_goes_on(srv, connect, depth):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send('{"op":"ping","id":' + "[" * depth + "]" * depth + "}")
    error = client.expect("error")
    assert error["code"] == "bad_frame"
    client.send({"op": "ping", "id": "after"})
    assert client.expect("pong")["id"] == "after"


@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
@pytest.mark.parametrize("path", ["/mutate", "/publish"])
def test_an_http_body_nested_too_deeply_is_400_never_500(srv, path, depth):
    token = srv.issue_token(tenant="acme", user="root", role="admin")
    nest = "[" * depth + "]" * depth
    if path == "/mutate":
        body = (
            '{"op":"mutate","topic":"t","entityId":"e","clientMutationId":"m",'
            f'"patch":{{"x":{nest}}}}}'
        )
    else:
        body = f'{{"topic":"t","type":"x.set","entityId":"e","payload":{{"x":{nest}}}}}'
    response = httpx.post(
        srv.url + path,
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "bad_frame"
    assert "nested too deeply" in response.json()["message"]


# -- sockets that never complete a request -----------------------------------------------


@pytest.fixture
def quick(make_server) -> ServerHandle:
    return make_server(request_timeout=0.5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sent",
    [b"", b"GET /sse?topic=c HTT", b"GET /poll?topic=c HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "half-a-request-line", "headers-never-end"],
)
def test_a_socket_that_does_not_complete_its_request_is_closed(quick, sent):
    sock = _raw(quick)
    sock.sendall(sent)
    assert _closed_by_server(sock) == b""
    assert quick.stats()["request_timeouts"] >= 1
    sock.close()


@pytest.mark.slow
def test_a_kept_alive_connection_that_starts_a_request_and_stalls_is_closed(quick):
    sock = _raw(quick)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b'"published"' not in data:
        data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /heal")  # the next request never ends
    assert _closed_by_server(sock) == b""
    sock.close()


@pytest.mark.slow
def test_a_body_that_does_not_arrive_in_time_is_408(quick):
    token = quick.issue_token(tenant="acme", user="root", role="admin")
    sock = _raw(quick)
    sock.sendall(
        b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {token}\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"topic":'
    )
    reply = _closed_by_server(sock)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
    assert b"request_timeout" in reply
    sock.close()


@pytest.mark.slow
def test_the_request_deadline_does_not_cut_long_lived_streams_or_sockets(quick, connect):
    quick.declare("c")
    token = quick.issue_token(tenant="acme", user="ana")
    with httpx.Client(timeout=5) as http:
        with http.stream(
            "GET",
            f"{quick.url}/sse?topic=c",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status_code == 200
            started = time.monotonic()
            beats = 0
            for line in response.iter_lines():  # heartbeats every 0.2 s, for 4 deadlines
                beats += line.startswith("event: heartbeat")
                if time.monotonic() - started > 2.0:
                    break
            assert beats >= 5
        for _ in range(3):  # a kept-alive client making requests is never cut
            assert http.get(f"{quick.url}/healthz").status_code == 200
    ws = connect(quick, token)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # past 4 request deadlines, the socket is still live
        ws.send({"op": "ping", "id": "p"})
        assert ws.expect("pong")["id"] == "p"
        ws.expect("heartbeat", skip=())
    assert quick.stats()["request_timeouts"] == 0


# -- the connection cap ------------------------------------------------------------------


def test_over_the_connection_cap_new_connections_get_503_with_retry_after(make_server, wait_until):
    srv = make_server(max_connections=4, request_timeout=30.0)
    idle = [_raw(srv) for _ in range(4)]
    wait_until(lambda: _on_loop(srv, lambda state: len(state.connections)) == 4)
    response = httpx.get(f"{srv.url}/healthz", timeout=5)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "busy"
    assert srv.stats()["connections_shed"] >= 1
    for sock in idle:
        sock.close()
    wait_until(lambda: httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200)


@pytest.mark.slow
def test_the_connection_cap_follows_the_file_descriptor_limit(wait_until, tmp_path):
    """With a low RLIMIT_NOFILE the server sheds with 503 instead of running out of fds."""
    stderr = tmp_path / "stderr.txt"
    with _subprocess_server("--nofile", "320", stderr=stderr) as server:
        cap = server.cap
        assert cap == 320 - FD_RESERVE - ACCEPT_BACKLOG
        total = cap + 120  # more than the process could hold
        socks: list[socket.socket] = []
        try:
            for _ in range(total):
                socks.append(socket.create_connection((server.host, server.port), timeout=5))
            # The server answers the surplus at once, without a request being sent.
            wait_until(
                lambda: server.stats()["connections_shed"] >= total - cap,
                what="the surplus connections to be shed",
            )
            shed = 0
            for sock in socks:
                sock.settimeout(0.05)
                try:
                    head = sock.recv(4096)
                except TimeoutError:
                    continue
                if head.startswith(b"HTTP/1.1 503"):
                    assert b"retry-after: 1" in head.lower()
                    shed += 1
            assert shed == server.stats()["connections_shed"]
        finally:
            for sock in socks:
                sock.close()
        wait_until(lambda: _healthy(server.url), what="the server to serve again")
    assert "Too many open files" not in stderr.read_text()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_connection_cap_is_the_setting_or_the_fd_limit_minus_the_reserve():
    import resource

    from rtnb.server.config import ServerConfig

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = connection_cap(ServerConfig(max_connections=10**9))
    assert cap == (10**9 if soft == resource.RLIM_INFINITY else soft - FD_RESERVE - ACCEPT_BACKLOG)
    assert connection_cap(ServerConfig(max_connections=3)) == 3


# -- latency: Nagle off on every accepted socket ------------------------------------------


def test_accepted_sockets_have_tcp_nodelay(srv):
    with httpx.Client() as http:
        assert http.get(f"{srv.url}/healthz").status_code == 200

        def options(state: Any) -> list[int]:
            return [
                p.transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY
                )
                for p in state.connections
            ]

        found = _on_loop(srv, options)
        assert found and all(found), found


def test_the_listening_socket_is_tcp_so_asyncio_sets_nodelay_itself():
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


# -- subprocess server ---------------------------------------------------------------------


class _Subprocess:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.proc = proc
        self.url = info["url"]
        self.viewer = info["viewer"]
        self.admin = info["admin"]
        self.cap = int(info["cap"])
        self.host, port = self.url.rsplit("//", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.ws_url = "ws" + self.url[4:] + "/ws"

    def stats(self) -> dict[str, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        result: dict[str, int] = json.loads(self.proc.stdout.readline())
        return result


@contextlib.contextmanager
def _subprocess_server(*args: str, stderr: Path | None = None) -> Iterator[_Subprocess]:
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(stderr.open("w")) if stderr is not None else None
        proc = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        yield from _running(proc)


def _running(proc: subprocess.Popen[str]) -> Iterator[_Subprocess]:
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the subprocess server failed to start"
        yield _Subprocess(proc, json.loads(line))
    finally:
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
