"""A client behind by more than its send queue catches up (issue 22).

A replay is streamed from the topic's log at the pace the socket drains, so the
send-queue cap bounds what one connection holds without cutting a client that
reads. Before, the whole replay was pushed into the queue at once: a replay
larger than ``send_queue_bytes`` was cut at once (SSE: always, the queue holds
``authenticated``), so a client once cut as a slow consumer reconnected, was cut
again, and never caught up — even after the publisher stopped.

Real servers on free ports, plain clients (``conftest.py``); "slow" is a client
that stops reading for a while.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame as WSFrame
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from rtnb.server import ServerHandle

CAP = 64 * 1024  # send_queue_bytes for these servers: a backlog is many times this
BLOB = "x" * 200


def _publish(srv: ServerHandle, topic: str, start: int, n: int) -> list[Any]:
    return srv.publish_many(
        topic,
        [("x.set", f"e{i % 50}", {"i": i, "blob": BLOB}) for i in range(start, start + n)],
        tenant="acme",
    )


def _read_sse(client: Any, until: int) -> tuple[list[dict[str, Any]], str, bool]:
    """Events until sequence ``until`` or the stream's end: events, the last ``id:``, and
    whether the stream ended as a slow consumer."""
    events: list[dict[str, Any]] = []
    last_id, cut = client.parser.last_event_id, False
    try:
        while not events or events[-1]["sequence"] < until:
            event = client.next()
            frame = json.loads(event.data)
            last_id = event.last_event_id
            if frame["op"] == "event":
                events.append(frame)
            elif frame["op"] == "error" and frame["code"] == "slow_consumer":
                cut = True
    except StopIteration:
        pass
    return events, last_id, cut


def test_an_sse_replay_larger_than_the_send_queue_arrives_whole(make_server, sse_connect, topic):
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4)
    first = _publish(srv, topic, 0, 1)[0]
    _publish(srv, topic, 1, 2000)  # ~500 KB behind: eight send queues
    token = srv.issue_token(tenant="acme", user="ana")
    client = sse_connect(srv, token, [topic], last_event_id=first.replay_token)
    events, _, cut = _read_sse(client, 2001)
    assert not cut, "a client reading its replay was cut as a slow consumer"
    assert [e["sequence"] for e in events] == list(range(2, 2002))
    assert srv.stats()["slow_consumers"] == 0


@pytest.mark.slow
def test_an_sse_client_that_stops_reading_past_retention_is_cut_and_resyncs(
    make_server, sse_connect, topic
):
    # Live, then behind (its queue passed the cap: read from the log), then further
    # behind than the log keeps: cut, with the reason; its reconnect gets a snapshot.
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4, retention=5_000)
    _publish(srv, topic, 0, 1)
    token = srv.issue_token(tenant="acme", user="ana")
    client = sse_connect(srv, token, [topic])
    _, frame = client.next_frame()
    assert frame["op"] == "subscribed"
    i = 1
    while srv.stats()["slow_consumers"] == 0:  # the client never reads meanwhile
        assert i < 200_000, "a peer that does not read was never cut"
        _publish(srv, topic, i, 500)
        i += 500
    assert srv.stats()["fell_behind"] >= 1, "cut without falling behind first"
    reasons: list[str] = []
    last_id = ""
    try:
        while True:
            event = client.next()
            last_id = event.last_event_id
            frame = json.loads(event.data)
            if frame["op"] == "error":
                reasons.append(frame["message"])
    except StopIteration:
        pass
    assert len(reasons) == 1 and "retention" in reasons[0], reasons
    again = sse_connect(srv, token, [topic], last_event_id=last_id)
    _, frame = again.next_frame()
    assert frame["op"] == "subscribed" and frame["replay"] == "unavailable"
    _, snapshot = again.next_frame()
    assert snapshot["op"] == "snapshot"
    truth = srv.truth(topic, tenant="acme")
    assert {e["entityId"]: e["state"] for e in snapshot["entities"]} == truth


class _RawWS:
    """A WebSocket client over a plain socket (websockets' sans-I/O protocol): it reads
    only when told to, so while it does not, the server's writes stall on the socket."""

    def __init__(self, url: str) -> None:
        uri = parse_uri(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        self.sock.settimeout(10)
        self.sock.connect((uri.host, uri.port))
        self.proto = ClientProtocol(uri, max_size=None)
        self.proto.send_request(self.proto.connect())
        self._flush()
        self.frames: list[dict[str, Any]] = []
        while self.proto.state is not State.OPEN:
            self._receive()

    def _flush(self) -> None:
        self.sock.sendall(b"".join(self.proto.data_to_send()))

    def _receive(self) -> None:
        data = self.sock.recv(1 << 16)
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
        self._flush()
        for event in self.proto.events_received():
            if isinstance(event, WSFrame) and event.opcode is Opcode.TEXT:
                frame = json.loads(event.data)
                self.frames.extend(frame["messages"] if frame["op"] == "batch" else [frame])
        if self.proto.state is State.CLOSED or not data:
            raise EOFError(f"closed: {self.proto.close_rcvd}")

    def send(self, frame: dict[str, Any]) -> None:
        self.proto.send_text(json.dumps(frame).encode())
        self._flush()

    def recv(self) -> dict[str, Any]:
        while not self.frames:
            self._receive()
        return self.frames.pop(0)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.slow
def test_a_ws_replay_larger_than_the_queue_is_not_cut_by_live_events(make_server, topic):
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4, retention=100_000)
    first = _publish(srv, topic, 0, 1)[0]
    _publish(srv, topic, 1, 40_000)  # ~10 MB behind: more than the sockets buffer
    client = _RawWS(srv.ws_url)
    try:
        client.send({"op": "authenticate", "token": srv.issue_token(tenant="acme", user="ana")})
        assert client.recv()["op"] == "authenticated"
        client.send({"op": "subscribe", "topic": topic, "replayFrom": first.replay_token})
        latest = 40_001
        for _ in range(50):  # live events while the replay waits to be read
            _publish(srv, topic, latest, 5)
            latest += 5
            if srv.stats()["slow_consumers"]:
                break
        seen: list[int] = []
        while not seen or seen[-1] < latest:
            try:
                frame = client.recv()
            except EOFError as exc:
                pytest.fail(f"cut at {seen[-1] if seen else 0} of {latest}: {exc}")
            if frame["op"] == "event":
                seen.append(frame["sequence"])
        assert seen == list(range(2, latest + 1))
        assert srv.stats()["slow_consumers"] == 0
    finally:
        client.close()


@pytest.mark.slow
def test_a_peer_that_does_not_read_its_replay_is_cut_once_retention_passes_it(
    make_server, connect, topic
):
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4, retention=10_000)
    first = _publish(srv, topic, 0, 1)[0]
    _publish(srv, topic, 1, 9_000)
    client = _RawWS(srv.ws_url)
    try:
        client.send({"op": "authenticate", "token": srv.issue_token(tenant="acme", user="ana")})
        assert client.recv()["op"] == "authenticated"
        client.send({"op": "subscribe", "topic": topic, "replayFrom": first.replay_token})
        latest = 9_001
        while srv.stats()["slow_consumers"] == 0:  # the client never reads again
            assert latest < 40_000, "a peer that does not read was never cut"
            _publish(srv, topic, latest, 500)
            latest += 500
        assert latest > 10_000, "cut before retention passed its position"
        with pytest.raises(EOFError, match=r"1013.*retention"):
            while True:
                client.recv()
    finally:
        client.close()
    # Its reconnect from where it was: the events are gone, a snapshot instead.
    again = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = again.subscribe(topic, replay_from=first.replay_token)
    assert subscribed["replay"] == "unavailable" and snapshot is not None


# -- a live subscriber over the cap catches up instead of being cut -------------------------
#
# A client that keeps up most of the time, then falls behind in a burst larger than its
# send queue: its topic is switched to the catch-up path at the last event queued and
# read from the log as the socket drains. No close, no reconnect, no snapshot: every
# event arrives once, in order, on the same connection.


def _heartbeat_while_behind(runtime: Any) -> bool:
    """A heartbeat waits in the queue of a session whose topic is behind (server loop):
    the socket is full and the client does not read."""
    return any(
        session.catchup
        and any(type(item) is str and '"heartbeat"' in item for item in session.queue)
        for session in runtime.hub.sessions
    )


def _stuck_behind(srv: ServerHandle) -> bool:
    """The client's topic is behind and a heartbeat waits behind its queue — or, as
    before this change, it was cut as a slow consumer."""
    return bool(srv.stats()["slow_consumers"] or srv._call(_heartbeat_while_behind))


def test_a_ws_client_that_stops_reading_during_a_live_burst_gets_every_event_in_order(
    make_server, topic
):
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4, retention=200_000)
    _publish(srv, topic, 0, 1)
    client = _RawWS(srv.ws_url)
    try:
        client.send({"op": "authenticate", "token": srv.issue_token(tenant="acme", user="ana")})
        assert client.recv()["op"] == "authenticated"
        client.send({"op": "subscribe", "topic": topic})
        while client.recv()["op"] != "snapshot":  # subscribed, then the snapshot: live
            pass
        latest = 1
        while not _stuck_behind(srv):  # the client does not read meanwhile
            assert latest < 150_000, "the queue never passed its cap: no burst made"
            _publish(srv, topic, latest, 500)
            latest += 500
        for _ in range(4):  # and a burst past that: live events while behind
            _publish(srv, topic, latest, 500)
            latest += 500
        seen: list[int] = []
        while not seen or seen[-1] < latest:
            try:
                frame = client.recv()
            except EOFError as exc:
                pytest.fail(f"cut at {seen[-1] if seen else 1} of {latest}: {exc}")
            if frame["op"] == "event":
                seen.append(frame["sequence"])
            elif frame["op"] == "heartbeat":  # never ahead of what was received: no tail gap
                assert frame["sequences"][topic] == (seen[-1] if seen else 1)
            else:
                pytest.fail(f"unexpected frame {frame['op']}: {frame}")
        assert seen == list(range(2, latest + 1)), "a gap, a duplicate or out of order"
        assert srv.stats()["slow_consumers"] == 0
        assert srv.stats()["fell_behind"] >= 1
    finally:
        client.close()


def test_an_sse_client_that_stops_reading_during_a_live_burst_gets_every_event_in_order(
    make_server, sse_connect, topic
):
    srv = make_server(send_queue_bytes=CAP, batch_max_bytes=CAP // 4, retention=200_000)
    _publish(srv, topic, 0, 1)
    token = srv.issue_token(tenant="acme", user="ana")
    client = sse_connect(srv, token, [topic])
    _, frame = client.next_frame()
    assert frame["op"] == "subscribed"
    _, frame = client.next_frame()
    assert frame["op"] == "snapshot"
    latest = 1
    while not _stuck_behind(srv):  # the client does not read meanwhile
        assert latest < 150_000, "the queue never passed its cap: no burst made"
        _publish(srv, topic, latest, 500)
        latest += 500
    for _ in range(4):
        _publish(srv, topic, latest, 500)
        latest += 500
    seen: list[int] = []
    try:
        while not seen or seen[-1] < latest:
            event = client.next()
            frame = json.loads(event.data)
            if frame["op"] == "event":
                seen.append(frame["sequence"])
            elif frame["op"] == "heartbeat":
                assert frame["sequences"][topic] == (seen[-1] if seen else 1)
            else:
                pytest.fail(f"unexpected {frame['op']} at {seen[-1] if seen else 1}: {frame}")
    except StopIteration:
        pytest.fail(f"the stream ended at {seen[-1] if seen else 1} of {latest}")
    assert seen == list(range(2, latest + 1)), "a gap, a duplicate or out of order"
    assert srv.stats()["slow_consumers"] == 0
    assert srv.stats()["fell_behind"] >= 1
