"""The Redis store in-process: shared replay tokens, retention, mutation idempotency."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

import rtnb
from rtnb.server.handle import ServerHandle
from rtnb.server.redis_store import keys_of
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
