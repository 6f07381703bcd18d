"""The Redis store in-process: shared replay tokens, retention, mutation idempotency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis

import rtnb
from rtnb.server import redis_store
from rtnb.server.handle import ServerHandle
from rtnb.server.redis_store import APPEND, REGISTRY, keys_of
from tests.redis.conftest import RedisServer, wait_for
from tests.server.conftest import WSClient

SECRET = "shared-secret-" * 3


@pytest.fixture
def pair(redis_aof: RedisServer) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    a = rtnb.serve(store=redis_aof.url, secret=SECRET, retention=50, heartbeat_interval=0.2)
    b = rtnb.serve(store=redis_aof.url, secret=SECRET, retention=50, heartbeat_interval=0.2)
    yield a, b
    a.stop()
    b.stop()


def _auth(srv: ServerHandle, role: str = "operator") -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.issue_token(tenant='acme', user='u', role=role)}"}


def test_a_replay_token_minted_on_one_gateway_replays_exactly_on_the_other(pair):
    a, b = pair
    events = [
        a.publish("t", "x.set", {"i": i}, tenant="acme", entity_id=f"e{i}") for i in range(10)
    ]
    assert [e.sequence for e in events] == list(range(1, 11))
    wait_for(lambda: b.truth("t", tenant="acme") == a.truth("t", tenant="acme"), what="B")
    client = WSClient(b.ws_url)
    try:
        client.authenticate(b.issue_token(tenant="acme", user="v", role="viewer"))
        subscribed, snapshot = client.subscribe("t", replay_from=events[2].replay_token)
        assert subscribed["replay"] == "complete" and snapshot is None
        got = [client.recv()["sequence"] for _ in range(7)]
        assert got == list(range(4, 11))
    finally:
        client.close()


def test_a_token_older_than_retention_is_unavailable_and_redis_trims(pair, redis_aof):
    a, b = pair
    first = a.publish("t", "x.set", {"i": 0}, tenant="acme", entity_id="e")
    a.publish_many("t", [("x.set", "e", {"i": i}) for i in range(1, 400)], tenant="acme")
    wait_for(lambda: b.truth("t", tenant="acme") == {"e": {"i": 399}}, what="B at 400")
    client = WSClient(b.ws_url)
    try:
        client.authenticate(b.issue_token(tenant="acme", user="v", role="viewer"))
        subscribed, snapshot = client.subscribe("t", replay_from=first.replay_token)
        assert subscribed["replay"] == "unavailable"
        assert snapshot is not None and snapshot["sequence"] == 400
    finally:
        client.close()
    _, stream, _ = keys_of(("acme", "t"))
    length = redis.Redis.from_url(redis_aof.url).xlen(stream)
    assert 50 <= length < 400, "XADD MAXLEN ~ keeps about the retention, at least it"


def test_a_mutation_retried_on_another_gateway_is_not_applied_twice(pair):
    a, b = pair
    a.publish("t", "x.set", {"v": 1}, tenant="acme", entity_id="e")
    body: dict[str, Any] = {
        "topic": "t",
        "entityId": "e",
        "patch": {"n": 1},
        "clientMutationId": "m-1",
    }
    first = httpx.post(f"{a.url}/mutate", json=body, headers=_auth(a), timeout=5)
    assert first.status_code == 200, first.text

    def retried() -> Any:
        r = httpx.post(f"{b.url}/mutate", json=body, headers=_auth(b), timeout=5)
        assert r.status_code in (200, 503), r.text
        return r.json() if r.status_code == 200 else None

    again = wait_for(retried, what="B to answer the retry")
    assert again["id"] == first.json()["id"], "the retry is answered with the first event"
    other = httpx.post(
        f"{b.url}/mutate", json={**body, "patch": {"n": 2}}, headers=_auth(b), timeout=5
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    latest = a.publish("t", "x.set", {"v": 2}, tenant="acme", entity_id="e")
    assert latest.sequence == 3, "exactly one event for the mutation"
    wait_for(lambda: b.truth("t", tenant="acme") == {"e": {"v": 2, "n": 1}}, what="B")


def test_a_gateway_that_missed_live_messages_reads_the_range_with_xrange(pair, redis_aof):
    a, b = pair
    a.publish("t", "x.set", {"i": 0}, tenant="acme", entity_id="e0")
    wait_for(lambda: b.truth("t", tenant="acme") == {"e0": {"i": 0}}, what="B at 1")
    # Two events appended by the very script, but announced on a channel nobody reads:
    # the gateways learn of them only from the next event's sequence jump.
    client = redis.Redis.from_url(redis_aof.url)
    meta, stream, state = keys_of(("acme", "t"))
    epoch = client.hget(meta, "epoch")
    script = client.register_script(APPEND)
    for i, entity in ((1, "e1"), (2, "e2")):
        body = msgspec.json.encode([entity, "x.set", {"i": i}, "2026-01-01T00:00:00Z", 1])
        status, *_ = script(
            keys=[meta, stream, state, REGISTRY],
            args=[
                epoch,
                i,
                "00" * 8,
                50,
                "nobody-listens",
                '["acme","t"]',
                60,
                entity,
                0,
                body,
                msgspec.json.encode({"i": i}),
                0,  # no idempotency key
                "",
                "",
            ],
        )
        assert status == b"ok"
    assert b.truth("t", tenant="acme") == {"e0": {"i": 0}}, "not announced: not seen yet"
    a.publish("t", "x.set", {"i": 3}, tenant="acme", entity_id="e3")
    want = {f"e{i}": {"i": i} for i in range(4)}
    wait_for(lambda: b.truth("t", tenant="acme") == want, what="B to fill the jump 1 -> 4")
    assert a.truth("t", tenant="acme") == want


def test_a_gateway_started_later_replays_from_redis_what_another_appended(redis_aof, monkeypatch):
    """Replay reads the stream (XRANGE), not the gateway's in-memory tail."""
    monkeypatch.setattr(redis_store, "MIRROR_TAIL", 20)  # each gateway keeps 20 in memory
    a = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    b = None
    try:
        a.publish("t", "x.set", {"i": 0}, tenant="acme", entity_id="e0")
        headers = _auth(a, "viewer")
        cursor = httpx.get(f"{a.url}/poll", params={"topic": "t"}, headers=headers).json()["cursor"]
        token = a.publish("t", "x.set", {"i": 1}, tenant="acme", entity_id="e1").replay_token
        n = 300
        a.publish_many("t", [("x.set", f"e{i % 7}", {"i": i}) for i in range(2, n)], tenant="acme")
        b = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
        assert b.latest_sequence("t", tenant="acme") == n, "B loaded the head from Redis"
        client = WSClient(b.ws_url)
        try:
            client.authenticate(b.issue_token(tenant="acme", user="v", role="viewer"))
            subscribed, snapshot = client.subscribe("t", replay_from=token)
            assert subscribed["replay"] == "complete" and snapshot is None
            got = [client.recv() for _ in range(n - 2)]
            assert [e["sequence"] for e in got] == list(range(3, n + 1))
            assert [e["payload"]["i"] for e in got] == list(range(2, n))
            b.publish("t", "x.set", {"i": n}, tenant="acme", entity_id="e0")
            assert client.recv()["sequence"] == n + 1, "live after the replay, no gap"
        finally:
            client.close()
        polled = httpx.get(
            f"{b.url}/poll",
            params={"topic": "t"},
            headers={**_auth(b, "viewer"), "Last-Event-ID": cursor},
            timeout=5,
        ).json()
        events = [m for m in polled["messages"] if m["op"] == "event"]
        assert events and [e["sequence"] for e in events] == list(range(2, 2 + len(events))), (
            "long polling replays from the stream too"
        )
    finally:
        a.stop()
        if b is not None:
            b.stop()


@pytest.mark.slow  # a chaos restart of two gateways: ~3 s
def test_a_restart_without_data_resets_the_topic_in_redis_for_every_gateway(pair, redis_aof):
    """``chaos.restart(keep_data=False)`` empties the shared store under a new epoch."""
    a, b = pair
    old = [a.publish("t", "x.set", {"i": i}, tenant="acme", entity_id=f"e{i}") for i in range(5)]
    wait_for(lambda: len(b.truth("t", tenant="acme")) == 5, what="B at 5")
    conn = rtnb.connect(
        b.url, token=b.issue_token(tenant="acme", user="v", role="viewer"), shared=False
    )
    try:
        topic = conn.subscribe("t")
        wait_for(lambda: topic.status == "live" and len(topic.server_entities) == 5, what="live")
        a.chaos.restart(keep_data=False)
        meta, stream, _ = keys_of(("acme", "t"))
        client = redis.Redis.from_url(redis_aof.url)
        assert client.xlen(stream) == 0 and client.hget(meta, "latest") == b"0"
        assert a.truth("t", tenant="acme") == {}
        wait_for(lambda: b.truth("t", tenant="acme") == {}, what="B to reload the new epoch")
        new = b.publish("t", "x.set", {"n": 1}, tenant="acme", entity_id="fresh")
        assert new.sequence == 1 and new.id.split("-")[1] != old[0].id.split("-")[1]
        b.chaos.disconnect_all()  # the client comes back with a token of the old epoch
        wait_for(
            lambda: topic.status == "live" and topic.server_entities == {"fresh": {"n": 1}},
            what="the client to re-snapshot under the new epoch",
        )
        assert conn.log.counts["gap_unrecoverable"] >= 1, "the lost events are logged as a gap"
        assert a.truth("t", tenant="acme") == {"fresh": {"n": 1}}
    finally:
        conn.close()


def test_a_mutation_id_claimed_through_one_gateway_is_checked_in_redis_over_websocket(pair):
    a, b = pair
    a.publish("t", "x.set", {"v": 1}, tenant="acme", entity_id="e")
    body = {"topic": "t", "entityId": "e", "patch": {"n": 1}, "clientMutationId": "m-ws"}
    first = httpx.post(f"{a.url}/mutate", json=body, headers=_auth(a), timeout=5)
    assert first.status_code == 200, first.text
    client = WSClient(b.ws_url)
    try:
        client.authenticate(b.issue_token(tenant="acme", user="u", role="operator"))
        client.send({"op": "mutate", **body, "patch": {"n": 2}})  # same id, other mutation
        rejected = client.expect("mutation_rejected")
        assert rejected["code"] == "idempotency_conflict"
        assert rejected["clientMutationId"] == "m-ws"
    finally:
        client.close()
    assert a.publish("t", "x.set", {"v": 2}, tenant="acme", entity_id="e").sequence == 3


def test_subscribing_to_a_topic_another_gateway_created_loads_it_and_unknown_stays_unknown(
    pair,
):
    a, b = pair
    client = WSClient(b.ws_url)
    try:
        client.authenticate(b.issue_token(tenant="acme", user="v", role="viewer"))
        client.send({"op": "subscribe", "topic": "nobody-published"})
        assert client.expect("error")["code"] == "unknown_topic"
        for i in range(3):
            a.publish("fresh", "x.set", {"i": i}, tenant="acme", entity_id=f"e{i}")
        subscribed, snapshot = client.subscribe("fresh")  # B may not have heard of it yet
        seen = subscribed["latestSequence"]  # B may still be reading the live channel
        assert 1 <= seen <= 3
        assert snapshot is not None and len(snapshot["entities"]) == seen
        a.publish("fresh", "x.set", {"i": 3}, tenant="acme", entity_id="e3")
        got = [client.expect("event")["sequence"] for _ in range(4 - seen)]
        assert got == list(range(seen + 1, 5)), "the rest live, in order, no gap"
    finally:
        client.close()
