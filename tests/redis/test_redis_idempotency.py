"""Idempotency keys on the Redis store: a cut link, a stalled Redis, two gateways.

Real parts only: a ``redis-server`` per test, a TCP fault proxy between one gateway
and Redis that cuts the link at a chosen command (``tests/faultproxy.py``), SIGSTOP /
SIGCONT of the ``redis-server`` process.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis

import rtnb
from rtnb.server import redis_store
from rtnb.server.handle import ServerHandle
from rtnb.server.redis_store import keys_of
from tests.faultproxy import FaultProxy
from tests.redis.conftest import RedisServer, wait_for

SECRET = "shared-secret-" * 3
TOPIC = "t"


def _auth(srv: ServerHandle, role: str = "operator") -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.issue_token(tenant='acme', user='u', role=role)}"}


def _stream(server: RedisServer) -> list[tuple[int, list[Any]]]:
    """Every event in the topic's stream: (sequence, [entity, type, payload, at, version])."""
    _, stream, _ = keys_of(("acme", TOPIC))
    with redis.Redis.from_url(server.url) as client:
        entries = client.xrange(stream)
    return [(int(i.split(b"-")[0]), msgspec.json.decode(f[b"b"])) for i, f in entries]


@pytest.fixture
def proxy(redis_aof: RedisServer) -> Iterator[FaultProxy]:
    fp = FaultProxy(("127.0.0.1", redis_aof.port))
    yield fp
    fp.close()


@pytest.fixture
def pair(redis_aof: RedisServer, proxy: FaultProxy) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    """Gateway A talks to Redis through the fault proxy, gateway B directly."""
    a = rtnb.serve(store=proxy.url(), secret=SECRET, heartbeat_interval=0.2)
    b = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    yield a, b
    a.stop()
    b.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_mutation_cut_at_its_append_is_never_acknowledged_without_its_event(
    pair, proxy, redis_aof, mode
):
    """The link dies at the append (before Redis gets it, or after Redis ran it).

    The code before claimed the id (SET NX) apart from the append: cut before the append,
    the same request retried answered 200 with an event stored nowhere, the next publish
    reused its id and sequence, and the other gateway answered 'already applied
    elsewhere' for 24 h.
    """
    a, b = pair
    a.publish(TOPIC, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    body = {"topic": TOPIC, "entityId": "e", "patch": {"n": 1}, "clientMutationId": "m-cut"}
    proxy.arm(b"EVAL", b"m-cut", mode=mode)
    first = httpx.post(f"{a.url}/mutate", json=body, headers=_auth(a), timeout=10)
    assert proxy.cut.wait(5), "the proxy cut the append"
    assert first.status_code == 503, first.text

    again = httpx.post(f"{a.url}/mutate", json=body, headers=_auth(a), timeout=10)
    assert again.status_code == 200, again.text
    event = again.json()
    stored = {seq: b for seq, b in _stream(redis_aof)}
    assert event["sequence"] in stored, "acknowledged an event Redis does not hold"
    assert stored[event["sequence"]][2] == {"n": 1, "clientMutationId": "m-cut"}
    carrying = [s for s, b in stored.items() if b[2].get("clientMutationId") == "m-cut"]
    assert carrying == [event["sequence"]], "the mutation is stored exactly once"

    other = httpx.post(f"{b.url}/mutate", json=body, headers=_auth(b), timeout=10)
    assert other.status_code == 200, other.text
    assert other.json()["id"] == event["id"], "the other gateway answers the same event"
    assert other.json()["replayToken"] == event["replayToken"]

    nxt = a.publish(TOPIC, "x.set", {"v": 2}, tenant="acme", entity_id="e")
    assert nxt.sequence == event["sequence"] + 1 and nxt.id != event["id"]
    assert nxt.replay_token != event["replayToken"]
    assert [s for s, _ in _stream(redis_aof)] == list(range(1, nxt.sequence + 1))
    want = {"e": {"v": 2, "n": 1}}
    wait_for(lambda: a.truth(TOPIC, tenant="acme") == want, what="A to hold the mutation")
    wait_for(lambda: b.truth(TOPIC, tenant="acme") == want, what="B to hold the mutation")
    assert first.json()["code"] == "outcome_unknown", first.text  # it may have been applied


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["before", "after"])
def test_a_publish_cut_at_its_append_is_stored_once_when_retried_with_its_publish_id(
    pair, proxy, redis_aof, mode
):
    a, b = pair
    a.publish(TOPIC, "x.set", {"v": 0}, tenant="acme", entity_id="e0")
    body = {
        "topic": TOPIC,
        "type": "x.set",
        "entityId": "e1",
        "payload": {"v": 1},
        "publishId": "p-cut",
    }
    proxy.arm(b"EVAL", b'"e1"', mode=mode)
    first = httpx.post(f"{a.url}/publish", json=body, headers=_auth(a, "admin"), timeout=10)
    assert proxy.cut.wait(5)
    assert first.status_code == 503 and first.json()["code"] == "outcome_unknown", first.text
    assert "may have been published" in first.json()["message"]
    answers = [
        httpx.post(f"{gw.url}/publish", json=body, headers=_auth(gw, "admin"), timeout=10)
        for gw in (a, b, a)
    ]
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    assert len({r.text for r in answers}) == 1, "every retry answers the same event frame"
    seq = answers[0].json()["sequence"]
    assert [(s, p[0]) for s, p in _stream(redis_aof)] == [(1, "e0"), (seq, "e1")] and seq == 2
    other = httpx.post(
        f"{b.url}/publish",
        json={**body, "payload": {"v": 2}},
        headers=_auth(b, "admin"),
        timeout=10,
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


@pytest.mark.slow
def test_a_publish_during_a_redis_stall_is_outcome_unknown_and_its_retry_publishes_once(
    redis_aof: RedisServer, monkeypatch: pytest.MonkeyPatch
):
    """Redis stopped (SIGSTOP, a VM pause) longer than the gateway's timeout mid-publish.

    Redis runs the queued append when it resumes, so the event *is* published: the 503
    must say the outcome is unknown, and the retry with the same publishId must answer
    that event and publish nothing (the code before said 'nothing of it was
    acknowledged — retry', and had no publishId: the retry published it twice).
    """
    monkeypatch.setattr(redis_store, "SOCKET_TIMEOUT", 0.5)
    srv = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    try:
        srv.publish(TOPIC, "x.set", {"v": 0}, tenant="acme", entity_id="e0")
        body = {
            "topic": TOPIC,
            "type": "x.set",
            "entityId": "e1",
            "payload": {"v": 1},
            "publishId": "p-stall",
        }
        assert redis_aof.proc is not None
        redis_aof.proc.send_signal(signal.SIGSTOP)
        try:
            stalled = httpx.post(
                f"{srv.url}/publish", json=body, headers=_auth(srv, "admin"), timeout=10
            )
        finally:
            redis_aof.proc.send_signal(signal.SIGCONT)
        assert stalled.status_code == 503, stalled.text
        assert stalled.json()["code"] == "outcome_unknown"
        assert "retry with the same publishId" in stalled.json()["message"]
        # Redis ran the append it had queued: the event is published after all.
        wait_for(lambda: len(_stream(redis_aof)) == 2, what="Redis to run the queued append")
        retry = httpx.post(f"{srv.url}/publish", json=body, headers=_auth(srv, "admin"), timeout=10)
        assert retry.status_code == 200, retry.text
        assert retry.json()["sequence"] == 2
        assert [(s, p[0]) for s, p in _stream(redis_aof)] == [(1, "e0"), (2, "e1")]
        nxt = srv.publish(TOPIC, "x.set", {"v": 2}, tenant="acme", entity_id="e2")
        assert nxt.sequence == 3
        again = srv.publish(
            TOPIC, "x.set", {"v": 1}, tenant="acme", entity_id="e1", publish_id="p-stall"
        )
        assert again.sequence == 2 and again.id == retry.json()["id"]
        assert len(_stream(redis_aof)) == 3, "published exactly once"
    finally:
        srv.stop()


def test_publish_ids_are_shared_by_gateways_and_per_topic(redis_aof: RedisServer) -> None:
    a = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    b = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    try:
        first = a.publish(TOPIC, "x.set", {"v": 1}, tenant="acme", entity_id="e", publish_id="k")
        again = b.publish(TOPIC, "x.set", {"v": 1}, tenant="acme", entity_id="e", publish_id="k")
        assert (again.id, again.sequence, again.replay_token) == (
            first.id,
            first.sequence,
            first.replay_token,
        )
        assert again.occurred_at == first.occurred_at and again.payload == first.payload
        other_topic = b.publish(
            "u", "x.set", {"v": 1}, tenant="acme", entity_id="e", publish_id="k"
        )
        assert other_topic.topic == "u" and other_topic.sequence == 1
        batch = b.publish_many(
            TOPIC,
            [("x.set", "e", {"v": 1}, "k"), ("x.set", "f", {"v": 2}, "k2"), ("x.set", "g", {})],
            tenant="acme",
        )
        assert [e.sequence for e in batch] == [1, 2, 3]
        assert batch[0].id == first.id
        assert len(_stream(redis_aof)) == 3
        with pytest.raises(ValueError, match="publishId was already used"):
            a.publish(TOPIC, "x.set", {"v": 9}, tenant="acme", entity_id="e", publish_id="k2")
    finally:
        a.stop()
        b.stop()
