"""Fault injection: every fault does what it says and is counted."""

from __future__ import annotations

import collections
import json
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from rtnb.server.chaos import parse_spec


def _burst(srv, topic, n, tenant="acme"):
    return srv.publish_many(
        topic, [("x.set", f"e{i % 5}", {"i": i}) for i in range(n)], tenant=tenant
    )


def _live(srv, connect, topic, tenant="acme"):
    srv.declare(topic)
    client = connect(srv, srv.issue_token(tenant=tenant, user="ana"))
    client.subscribe(topic)
    return client


def _drain(client, topic):
    """Every event frame up to a ping fence (the fence follows all pushed frames)."""
    client.send({"op": "ping", "id": "fence"})
    frames = client.until(lambda f: f["op"] == "pong" and f["id"] == "fence", timeout=5)
    return [f["sequence"] for f in frames if f["op"] == "event" and f["topic"] == topic]


def test_drop_and_duplicate_match_what_the_subscriber_observes(make_server, connect):
    srv = make_server()
    client = _live(srv, connect, "c")
    srv.chaos.set(drop=0.2, duplicate=0.2, seed=7)
    _burst(srv, "c", 300)
    srv.chaos.set()
    seen = collections.Counter(_drain(client, "c"))
    counts = srv.chaos.counts
    dropped = {seq for fault, _, seq in srv.chaos.injected if fault == "dropped"}
    duplicated = {seq for fault, _, seq in srv.chaos.injected if fault == "duplicated"}
    assert counts["dropped"] == len(dropped) > 0
    assert counts["duplicated"] == len(duplicated) > 0
    assert set(range(1, 301)) - set(seen) == dropped
    assert {seq for seq, n in seen.items() if n == 2} == duplicated
    assert sum(seen.values()) == 300 - counts["dropped"] + counts["duplicated"]


def test_reorder_holds_events_back_within_the_window_and_loses_none(make_server, connect):
    srv = make_server()
    client = _live(srv, connect, "c")
    srv.chaos.set(reorder=0.3, reorder_window=3, seed=3)
    _burst(srv, "c", 200)
    srv.chaos.set()
    seen = client.events("c", 200)
    order = [f["sequence"] for f in seen]
    assert sorted(order) == list(range(1, 201))
    assert order != sorted(order)
    assert srv.chaos.counts["reordered"] > 0
    displaced = max(abs(i + 1 - seq) for i, seq in enumerate(order))
    assert displaced <= 3 * 2, "events move only within a small window"


def test_delay_delivers_every_event_later_and_counts_it(make_server, connect):
    srv = make_server()
    client = _live(srv, connect, "c")
    srv.chaos.set(delay_ms=(1, 20), seed=1)
    _burst(srv, "c", 50)
    srv.chaos.set()
    assert sorted(f["sequence"] for f in client.events("c", 50)) == list(range(1, 51))
    assert srv.chaos.counts["delayed"] == 50


def test_replays_are_not_subject_to_per_subscriber_faults(make_server, connect):
    srv = make_server()
    first = _burst(srv, "c", 1)[0]
    _burst(srv, "c", 100)
    srv.chaos.set(drop=1.0)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.subscribe("c", replay_from=first.replay_token)
    assert [f["sequence"] for f in client.events("c", 100)] == list(range(2, 102))
    assert srv.chaos.counts["dropped"] == 0


def test_disconnect_all_closes_every_connection_with_going_away(make_server, connect):
    srv = make_server()
    a, b = _live(srv, connect, "c"), _live(srv, connect, "d")
    assert srv.chaos.disconnect_all() == 2
    assert a.closed()[0] == 1001 and b.closed()[0] == 1001
    assert srv.chaos.counts["disconnects"] == 2
    _live(srv, connect, "c")  # and the server still accepts connections


@pytest.mark.slow
def test_stall_is_a_silent_cut_connections_stay_open_and_nothing_flows(
    make_server, connect, wait_until
):
    srv = make_server()
    client = _live(srv, connect, "c")
    srv.chaos.stall(seconds=0.5)
    _burst(srv, "c", 3)
    client.send({"op": "ping", "id": "lost"})
    wait_until(lambda: not srv.chaos.is_cut(), timeout=3, what="the end of the stall")
    _burst(srv, "c", 1)
    frames = client.until(lambda f: f["op"] == "event")
    assert frames[-1]["sequence"] == 4, "events 1-3 were lost in the cut"
    assert not [f for f in frames if f["op"] == "pong"], "the ping was lost too"
    counts = srv.chaos.counts
    assert counts["stalls"] == 1 and counts["stalled_frames"] >= 3
    assert counts["stalled_inbound"] == 1


@pytest.mark.slow
def test_stall_heartbeats_stops_heartbeats_but_not_events(make_server, connect, wait_until):
    srv = make_server(heartbeat_interval=0.05)
    client = _live(srv, connect, "c")
    client.expect("heartbeat")
    start = time.time()
    srv.chaos.stall_heartbeats(seconds=0.5)
    _burst(srv, "c", 2)
    assert len(client.events("c", 2)) == 2
    wait_until(lambda: not srv.chaos.heartbeats_stalled(), timeout=3, what="heartbeats back")
    end = time.time()
    frames = client.until(lambda f: f["op"] == "heartbeat" and f["serverTime"] > end)
    during = [
        f
        for f in client.received
        if f["op"] == "heartbeat" and start + 0.02 < f["serverTime"] < end - 0.02
    ]
    assert not during and frames
    assert srv.chaos.counts["heartbeats_skipped"] > 0


def test_expire_tokens_closes_authenticated_connections_4401_and_refuses_old_tokens(
    make_server, connect
):
    srv = make_server()
    token = srv.issue_token(tenant="acme", user="ana")
    client = connect(srv, token)
    assert srv.chaos.expire_tokens() == 1
    assert client.expect("error")["code"] == "token_expired"
    assert client.closed()[0] == 4401
    again = connect(srv)
    again.send({"op": "authenticate", "token": token})
    assert again.expect("error")["code"] == "token_expired"
    connect(srv, srv.issue_token(tenant="acme", user="ana"))  # a fresh one works
    assert srv.chaos.counts["tokens_expired"] == 1


def test_restart_closes_connections_1012_and_comes_back_on_the_same_url(make_server, connect):
    srv = make_server()
    url = srv.url
    client = _live(srv, connect, "c")
    srv.chaos.restart(keep_data=True)
    assert client.closed()[0] == 1012
    assert srv.url == url and srv.chaos.counts["restarts"] == 1
    _live(srv, connect, "c")


def test_chaos_specs_parse_like_the_command_line(make_server):
    assert parse_spec("drop=0.01,duplicate=0.05,delay_ms=0-50,seed=7") == {
        "drop": 0.01,
        "duplicate": 0.05,
        "delay_ms": (0.0, 50.0),
        "seed": 7,
    }
    with pytest.raises(ValueError, match="unknown fault"):
        parse_spec("explode=1")
    srv = make_server(chaos="drop=0.5")
    assert srv.chaos.drop == 0.5 and srv.chaos.active
    with pytest.raises(ValueError, match="probability"):
        srv.chaos.set(drop=2)


@pytest.mark.slow
def test_a_slow_consumer_is_disconnected_instead_of_growing_memory(
    make_server, connect, wait_until
):
    # Past its cap the slow client's topic falls behind (read from the log as it reads);
    # it is cut once the log's retention passes its position.
    srv = make_server(send_queue_limit=100, retention=2_000)
    healthy = _live(srv, connect, "c")
    srv.declare("c")
    slow = connect(srv, srv.issue_token(tenant="acme", user="slow"), max_queue=1)
    slow.send({"op": "subscribe", "topic": "c"})
    healthy.send({"op": "ping", "id": "x"})
    healthy.expect("pong")
    blob = "x" * 4096
    sent = 0
    while srv.stats()["slow_consumers"] == 0:
        assert sent < 50_000, "the slow consumer was never cut off"
        # bursts below the queue limit: a healthy reader keeps up with them
        srv.publish_many("c", [("x.set", "e", {"blob": blob})] * 50, tenant="acme")
        sent += 50
        assert len(healthy.events("c", 50, timeout=10)) == 50
    code = None
    try:
        while True:
            slow.ws.recv(timeout=5)
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
    assert code in (1013, None)  # 1013 if the close frame got through the full buffers
    wait_until(lambda: srv.stats()["open_sessions"] == 1, what="the slow session to be gone")


def test_admission_control_sheds_a_connection_storm_with_4429_and_a_retry_hint(
    make_server, connect
):
    # The bucket admits a burst of 10, then one per 10 s: a loaded machine cannot take
    # long enough between the shed WebSocket and the SSE request below to refill it.
    srv = make_server(admission_rate=0.1)
    token = srv.issue_token(tenant="acme", user="ana")
    closes = []
    for _ in range(100):
        client = connect(srv)
        try:
            client.send({"op": "authenticate", "token": token})
            first = json.loads(client.ws.recv(timeout=5))
            if first["op"] == "batch":  # authenticated queued together with a heartbeat
                first = first["messages"][0]
            assert first["op"] == "authenticated"
        except ConnectionClosed as exc:
            closes.append((exc.rcvd.code, exc.rcvd.reason))
            break
    assert closes, "no connection was shed"
    ((code, reason),) = closes
    assert code == 4429 and float(reason.split("retry_after=")[1]) > 0
    srv.declare("c")
    with httpx.stream(  # a stream: an admitted SSE request must fail here, not hang
        "GET",
        f"{srv.url}/sse",
        params={"topic": "c"},
        headers={"Authorization": f"Bearer {srv.issue_token(tenant='acme', user='u')}"},
        timeout=5,
    ) as r:
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
    assert srv.stats()["admissions_shed"] == 2
