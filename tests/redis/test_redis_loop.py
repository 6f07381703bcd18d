"""The gateway's event loop never waits on Redis: a slow, hung or dead Redis, many replays.

A *probe* coroutine on the server's loop sleeps 10 ms at a time and records how late it
wakes: a blocking Redis call on the loop shows up as a wake-up as late as the call.
Redis is made slow with ``CLIENT PAUSE <ms> ALL`` from another connection: every command
of every other client waits until the pause ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import redis

import rtnb
from rtnb.core.backoff import Backoff
from rtnb.server import redis_store
from rtnb.server.handle import ServerHandle
from rtnb.server.redis_store import APPEND, REGISTRY, keys_of
from tests.conftest import wait_until
from tests.redis.conftest import RedisServer
from tests.server.conftest import WSClient

SECRET = "shared-secret-" * 3
PAUSE_S = 1.5  # how long Redis answers nobody
LATE_S = PAUSE_S / 3  # a probe wake-up this late means the loop was blocked


class Probe:
    """The worst lateness of a 10 ms sleep on the server's loop, while it runs."""

    def __init__(self, srv: ServerHandle) -> None:
        inc = srv._inc
        assert inc is not None
        self.loop = inc.loop
        self.stop: asyncio.Event | None = None
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.worst = asyncio.run_coroutine_threadsafe(self._run(started), self.loop)
        started.result(5)

    async def _run(self, started: concurrent.futures.Future[None]) -> float:
        loop = asyncio.get_running_loop()
        self.stop = stop = asyncio.Event()
        started.set_result(None)
        worst = 0.0
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - before - 0.01)
        return worst

    def result(self) -> float:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        return self.worst.result(5)


def _pause(server: RedisServer, seconds: float) -> None:
    with redis.Redis.from_url(server.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", int(seconds * 1000), "ALL")


def _auth(srv: ServerHandle, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.issue_token(tenant='acme', user='u', role=role)}"}


@pytest.fixture
def gateway(redis_aof: RedisServer) -> Iterator[ServerHandle]:
    srv = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    yield srv
    srv.stop()


@pytest.mark.parametrize("path", ["POST /publish", "srv.publish"])
def test_the_first_publish_to_a_new_topic_does_not_block_the_loop_on_a_slow_redis(
    gateway: ServerHandle, redis_aof: RedisServer, path: str
) -> None:
    srv = gateway
    srv.publish("warm", "x.set", {"i": 0}, tenant="acme", entity_id="e")  # the client is up
    probe = Probe(srv)
    _pause(redis_aof, PAUSE_S)
    started = time.monotonic()
    if path == "POST /publish":
        body = {"topic": "fresh", "type": "x.set", "entityId": "e", "payload": {"i": 1}}
        r = httpx.post(f"{srv.url}/publish", json=body, headers=_auth(srv, "admin"), timeout=10)
        assert r.status_code == 200, r.text
        event: Any = r.json()
    else:
        event = srv.publish("fresh", "x.set", {"i": 1}, tenant="acme", entity_id="e")
        event = {"sequence": event.sequence}
    took = time.monotonic() - started
    worst = probe.result()
    assert took >= PAUSE_S * 0.6, f"the publish took {took:.2f} s: Redis was not slow for it"
    assert worst < LATE_S, (
        f"the loop stalled {worst:.2f} s while Redis was paused {PAUSE_S} s "
        f"(publish took {took:.2f} s)"
    )
    assert event["sequence"] == 1
    assert srv.truth("fresh", tenant="acme") == {"e": {"i": 1}}


def _create_unannounced(server: RedisServer, topic: str, entity: str) -> None:
    """Create ``topic`` with one entity in Redis, announced on a channel nobody reads:
    the gateway learns of it only when a request names it."""
    meta, stream, state = keys_of(("acme", topic))
    with redis.Redis.from_url(server.url) as client:
        script = client.register_script(APPEND)

        def append(epoch: Any, events: list[Any]) -> Any:
            fixed = [epoch, 0, "ab" * 8, 50, "nobody-listens", f'["acme","{topic}"]', 60]
            return script(keys=[meta, stream, state, REGISTRY], args=[*fixed, *events])

        status, epoch, *_ = append("", [])
        assert status == b"epoch", "a missing topic is created under a new epoch"
        body = msgspec.json.encode([entity, "x.set", {"n": 0}, "2026-01-01T00:00:00Z", 1])
        status, *_ = append(epoch, [entity, 0, body, b'{"n":0}', 0, "", ""])  # no key
        assert status == b"ok"


def test_a_mutation_on_a_topic_new_to_the_gateway_does_not_block_the_loop_on_a_slow_redis(
    gateway: ServerHandle, redis_aof: RedisServer
) -> None:
    """The topic is looked up and loaded on the loop, then merged on the entity from Redis.

    (The code before loaded it with the blocking client only *after* the awaited claim,
    i.e. after this pause: this test guards the path, it did not catch that code.)
    """
    srv = gateway
    srv.publish("warm", "x.set", {"i": 0}, tenant="acme", entity_id="e")
    _create_unannounced(redis_aof, "made-elsewhere", "e")
    probe = Probe(srv)
    _pause(redis_aof, PAUSE_S)
    started = time.monotonic()
    body = {"topic": "made-elsewhere", "entityId": "e", "patch": {"n": 1}, "clientMutationId": "m"}
    r = httpx.post(f"{srv.url}/mutate", json=body, headers=_auth(srv, "operator"), timeout=10)
    took = time.monotonic() - started
    worst = probe.result()
    assert r.status_code == 200, r.text
    assert took >= PAUSE_S * 0.6, f"the mutation took {took:.2f} s: Redis was not slow for it"
    assert worst < LATE_S, f"the loop stalled {worst:.2f} s (mutation took {took:.2f} s)"
    assert r.json()["sequence"] == 2, "merged on the entity loaded from Redis"
    assert srv.truth("made-elsewhere", tenant="acme") == {"e": {"n": 1}}


def test_a_subscribe_to_a_new_topic_on_a_hung_redis_answers_unavailable_without_stalling(
    redis_aof: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis accepts the connection but answers nothing: the registry check times out on
    the loop's asyncio client, the client gets ``unavailable``, and the loop keeps going."""
    monkeypatch.setattr(redis_store, "SOCKET_TIMEOUT", 0.3, raising=False)
    srv = rtnb.serve(store=redis_aof.url, secret=SECRET, heartbeat_interval=0.2)
    client = WSClient(srv.ws_url)
    try:
        client.authenticate(srv.issue_token(tenant="acme", user="v", role="viewer"))
        probe = Probe(srv)
        _pause(redis_aof, PAUSE_S * 2)
        started = time.monotonic()
        client.send({"op": "subscribe", "topic": "made-elsewhere"})
        error = client.expect("error")
        answered = time.monotonic() - started
        snap = httpx.get(
            f"{srv.url}/snapshot",
            params={"topic": "other"},
            headers=_auth(srv, "viewer"),
            timeout=10,
        )
        worst = probe.result()
        assert error["code"] == "unavailable" and error["topic"] == "made-elsewhere", error
        assert "retry" in error["message"]
        assert answered < PAUSE_S, f"answered after {answered:.2f} s: not bounded"
        assert snap.status_code == 503 and snap.json()["code"] == "unavailable", snap.text
        assert snap.headers["retry-after"] == "1"
        assert worst < LATE_S, f"the loop stalled {worst:.2f} s"
    finally:
        client.close()
        srv.stop()


def test_with_redis_down_requests_on_new_topics_answer_unavailable(
    gateway: ServerHandle, redis_aof: RedisServer
) -> None:
    srv = gateway
    srv.publish("known", "x.set", {"i": 0}, tenant="acme", entity_id="e")
    redis_aof.stop()
    client = WSClient(srv.ws_url)
    try:
        client.authenticate(srv.issue_token(tenant="acme", user="v", role="viewer"))
        client.send({"op": "subscribe", "topic": "new"})
        assert client.expect("error")["code"] == "unavailable"
        subscribed, snapshot = client.subscribe("known")  # what the gateway holds still serves
        assert subscribed["latestSequence"] == 1 and snapshot is not None
    finally:
        client.close()
    body = {"topic": "new", "type": "x.set", "entityId": "e", "payload": {}}
    r = httpx.post(f"{srv.url}/publish", json=body, headers=_auth(srv, "admin"), timeout=20)
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text
    assert r.headers["retry-after"] == "1"
    assert "nothing was published" in r.json()["message"]
    with pytest.raises(RuntimeError, match="could not load topic 'new'"):
        srv.publish("new", "x.set", {}, tenant="acme", entity_id="e")
    mutation = {"topic": "new", "entityId": "e", "patch": {"n": 1}, "clientMutationId": "m"}
    r = httpx.post(f"{srv.url}/mutate", json=mutation, headers=_auth(srv, "operator"), timeout=20)
    assert r.status_code == 503 and r.json()["code"] == "unavailable", r.text


@pytest.mark.parametrize("pool", [2, 64])
def test_concurrent_replays_beyond_the_pool_all_complete_on_a_bounded_pool(
    redis_aof: RedisServer, pool: int
) -> None:
    """12 replays at once, each reading ``XRANGE`` while Redis is paused: with
    ``max_connections=2`` they share two connections and all complete; with 64 (the
    control) the same burst opens more than two, so the burst really was concurrent."""
    n, events = 12, 60
    srv = rtnb.serve(
        store=f"{redis_aof.url}?max_connections={pool}", secret=SECRET, heartbeat_interval=5
    )
    clients: list[WSClient] = []
    try:
        published = srv.publish_many(
            "t", [("x.set", f"e{i % 5}", {"i": i}) for i in range(events)], tenant="acme"
        )
        token = published[9].replay_token
        for _ in range(n):
            client = WSClient(srv.ws_url)
            clients.append(client)
            client.authenticate(srv.issue_token(tenant="acme", user="v", role="viewer"))
        _pause(redis_aof, 1.0)
        for client in clients:
            client.send({"op": "subscribe", "topic": "t", "replayFrom": token})
        for client in clients:
            subscribed = client.expect("subscribed", timeout=10)
            assert subscribed["replay"] == "complete", subscribed
            got = client.events("t", events - 10, timeout=10)
            assert [e["sequence"] for e in got] == list(range(11, events + 1))
        with redis.Redis.from_url(redis_aof.url) as admin:
            listed = admin.client_list()
        opened = sum(1 for c in listed if c["name"] == redis_store.CLIENT_NAME)
        if pool == 2:
            assert 1 <= opened <= 2, f"{opened} pooled connections, the bound is 2"
        else:
            assert opened > 2, f"the control opened {opened}: the replays were not concurrent"
    finally:
        for client in clients:
            client.close()
        srv.stop()


def test_a_client_rides_out_a_redis_outage_on_a_topic_new_to_the_gateway(
    gateway: ServerHandle, redis_aof: RedisServer
) -> None:
    """``unavailable`` is not a refusal: the client backs off, asks again, and goes live
    once Redis is back (a refused topic would never be asked for again)."""
    _create_unannounced(redis_aof, "made-elsewhere", "e1")  # fsynced: appendfsync always
    redis_aof.stop()
    reasons: list[str] = []
    conn = rtnb.connect(
        gateway.url,
        token=gateway.issue_token(tenant="acme", user="v", role="viewer"),
        shared=False,
        backoff=Backoff(base=0.2, cap=0.5),
    )
    try:
        conn.on_state(lambda s: reasons.append(s.reason))
        topic = conn.subscribe("made-elsewhere")
        wait_until(lambda: sum("unavailable on this server" in r for r in reasons) >= 2, 30)
        assert topic.freshness.status != "live"
        redis_aof.start()
        wait_until(lambda: topic.freshness.status == "live", 30)
        assert topic.server_entities == {"e1": {"n": 0}}
        assert topic.server_entities == gateway.truth("made-elsewhere", tenant="acme")
    finally:
        conn.close()
