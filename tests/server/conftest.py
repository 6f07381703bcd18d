"""Fixtures for the reference-server tests: real servers on free ports, plain clients.

The clients here are deliberately plain (``websockets`` and ``httpx``) so the
server is tested independently of rtnb's own client. Nothing sleeps to wait for
something: ``wait_until`` polls a condition against a deadline.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from rtnb.protocol.sse import SSEEvent, SSEParser
from rtnb.server import ServerHandle, serve
from tests.helpers import stopper

Frame = dict[str, Any]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.002)


class WSClient:
    """A plain WebSocket client speaking rtnb's JSON frames; batches are flattened."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        # Unbounded client queue: a test that stops reading must not stall the
        # close handshake behind unread frames (the slow-consumer test opts out).
        kwargs.setdefault("max_queue", None)
        self._context = ws_connect(url, open_timeout=5, **kwargs)
        self.ws: ClientConnection = self._context.__enter__()
        self.pending: list[Frame] = []
        self.received: list[Frame] = []
        self.batches = 0

    def send(self, frame: Frame | str | bytes) -> None:
        self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> Frame:
        """The next frame (a batch's messages come one by one)."""
        if not self.pending:
            raw = self.ws.recv(timeout=timeout)
            frame = json.loads(raw)
            if frame.get("op") == "batch":
                self.batches += 1
                self.pending.extend(frame["messages"])
            else:
                self.pending.append(frame)
        frame = self.pending.pop(0)
        self.received.append(frame)
        return frame

    def expect(
        self, op: str, timeout: float = 5.0, skip: tuple[str, ...] = ("heartbeat",)
    ) -> Frame:
        """The next frame that is not in ``skip``; it must have ``op``."""
        while True:
            frame = self.recv(timeout)
            if frame["op"] in skip and op not in skip:
                continue
            assert frame["op"] == op, f"expected {op!r}, got {frame}"
            return frame

    def until(self, predicate: Callable[[Frame], bool], timeout: float = 5.0) -> list[Frame]:
        """Frames up to and including the first one matching ``predicate``."""
        deadline = time.monotonic() + timeout
        out: list[Frame] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no matching frame within {timeout} s; got {out[-5:]}")
            frame = self.recv(remaining)
            out.append(frame)
            if predicate(frame):
                return out

    def events(self, topic: str, count: int, timeout: float = 5.0) -> list[Frame]:
        """The next ``count`` events of ``topic`` (other frames are skipped)."""
        got: list[Frame] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"got {len(got)} of {count} events within {timeout} s")
            frame = self.recv(remaining)
            if frame["op"] == "event" and frame["topic"] == topic:
                got.append(frame)
        return got

    def authenticate(self, token: str) -> Frame:
        self.send({"op": "authenticate", "token": token})
        return self.expect("authenticated")

    def subscribe(self, topic: str, replay_from: str | None = None) -> tuple[Frame, Frame | None]:
        """Subscribe; return ``subscribed`` and, unless replay is complete, the snapshot."""
        frame: Frame = {"op": "subscribe", "topic": topic}
        if replay_from is not None:
            frame["replayFrom"] = replay_from
        self.send(frame)
        subscribed = self.expect("subscribed")
        if subscribed["replay"] == "complete":
            return subscribed, None
        return subscribed, self.expect("snapshot")

    def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; return (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")
        except TimeoutError:
            pytest.fail(f"the server did not close within {timeout} s")
        pytest.fail(f"the server did not close within {timeout} s")

    def close(self) -> None:
        self._context.__exit__(None, None, None)


class SSEClient:
    """A plain ``httpx`` SSE stream parsed with rtnb's ``SSEParser``."""

    def __init__(
        self, server: ServerHandle, token: str, topics: list[str], last_event_id: str = ""
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.http = httpx.Client(timeout=httpx.Timeout(5.0))
        self._context = self.http.stream(
            "GET", f"{server.url}/sse", params=[("topic", t) for t in topics], headers=headers
        )
        self.response = self._context.__enter__()
        self.parser = SSEParser(last_event_id)
        self._chunks = self.response.iter_raw()
        self._pending: collections.deque[SSEEvent] = collections.deque()

    def next(self) -> SSEEvent:
        while not self._pending:
            self._pending.extend(self.parser.feed(next(self._chunks)))
        return self._pending.popleft()

    def next_frame(
        self, *, skip: tuple[str, ...] = ("heartbeat", "authenticated")
    ) -> tuple[SSEEvent, Frame]:
        while True:
            event = self.next()
            if event.type not in skip:
                return event, json.loads(event.data)

    def events(self, count: int) -> list[tuple[SSEEvent, Frame]]:
        out = []
        while len(out) < count:
            event, frame = self.next_frame()
            if frame["op"] == "event":
                out.append((event, frame))
        return out

    def close(self) -> None:
        self._context.__exit__(None, None, None)
        self.http.close()


@pytest.fixture
def sse_connect() -> Iterator[Callable[..., SSEClient]]:
    clients: list[SSEClient] = []

    def make(server: ServerHandle, token: str, topics: list[str], last_event_id: str = ""):
        client = SSEClient(server, token, topics, last_event_id)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerHandle]:
    """A shared server for tests that do not change server-wide state."""
    with serve(port=0, heartbeat_interval=0.2, auth_timeout=1.0) as handle:
        yield handle


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerHandle]]:
    """A factory of private servers (for chaos, restarts, special limits)."""
    started: list[ServerHandle] = []

    def make(**options: Any) -> ServerHandle:
        options.setdefault("heartbeat_interval", 0.2)
        handle = serve(port=0, **options)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        stopper.stop_soon(handle)  # uvicorn's 0.2 s of ticks overlap the next test


@pytest.fixture
def connect() -> Iterator[Callable[..., WSClient]]:
    """``connect(srv, token=None, **ws_kwargs)``: a WSClient, authenticated if a token is given."""
    clients: list[WSClient] = []

    def make(server: ServerHandle, token: str | None = None, **kwargs: Any) -> WSClient:
        client = WSClient(server.ws_url, **kwargs)
        clients.append(client)
        if token is not None:
            client.authenticate(token)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until


_topic_counter = iter(range(1, 1_000_000))


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses (tests share the module server)."""
    return f"t{next(_topic_counter)}"
