"""Several gateways on one Redis: failover with nothing lost, Redis restarts, one sequence each.

Real parts only: a ``redis-server`` per test (``conftest.py``), gateways as
``python -m rtnb serve --store redis://…`` subprocesses killed with SIGKILL, a
real ``rtnb.connect`` client over real sockets.
"""

from __future__ import annotations

import collections
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

import rtnb
from rtnb.server.auth import TokenAuthority
from rtnb.server.redis_store import keys_of
from tests.redis.conftest import Gateway, RedisServer, wait_for

TOPIC = "orders"


def _secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.key"
    path.write_text("ab" * 32)
    path.chmod(0o600)
    return path


def _token(secret: Path, role: str = "admin", user: str = "ops") -> str:
    key = bytes.fromhex(secret.read_text().strip())
    return TokenAuthority(key).issue(tenant="acme", user=user, role=role, ttl=600)


def _publish(gw: Gateway, secret: Path, entity: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{gw.url}/publish",
        json={"topic": TOPIC, "type": "order.updated", "entityId": entity, "payload": payload},
        headers={"Authorization": f"Bearer {_token(secret)}"},
        timeout=10,
    )
    response.raise_for_status()
    event: dict[str, Any] = response.json()
    return event


def _snapshot(gw: Gateway, secret: Path) -> dict[str, dict[str, Any]]:
    response = httpx.get(
        f"{gw.url}/snapshot",
        params={"topic": TOPIC},
        headers={"Authorization": f"Bearer {_token(secret)}"},
        timeout=10,
    )
    response.raise_for_status()
    return {e["entityId"]: e["state"] for e in response.json()["entities"]}


def _gateways(redis_server: RedisServer, tmp_path: Path, n: int = 2) -> tuple[Path, list[Gateway]]:
    secret = _secret(tmp_path)
    gws = [Gateway(redis_server.url, secret, tmp_path) for _ in range(n)]
    for gw in gws:
        gw.start()
    return secret, gws


def _applied_twice(conn: Any) -> list[int]:
    env = conn.log.envelopes
    env = env[(env["topic"] == TOPIC) & env["outcome"].isin(["applied", "replayed"])]
    counts = collections.Counter(int(s) for s in env["sequence"])
    return sorted(s for s, c in counts.items() if c > 1)


@pytest.mark.slow
def test_a_client_fails_over_to_another_gateway_and_misses_nothing(redis_aof, tmp_path):
    secret, (a, b) = _gateways(redis_aof, tmp_path)
    conn = None
    try:
        _publish(b, secret, "o0", {"n": 0})
        conn = rtnb.connect(
            [a.url, b.url],
            token=_token(secret, "viewer", "rider"),
            transport="websocket",
            shared=False,
        )
        topic = conn.subscribe(TOPIC)
        wait_for(lambda: topic.status == "live", what="the client live on gateway A")
        stop = threading.Event()
        acked: list[dict[str, Any]] = []

        def publisher() -> None:  # through B, all along
            i = 0
            while not stop.is_set():
                i += 1
                acked.append(_publish(b, secret, f"o{i % 7}", {"n": i}))

        worker = threading.Thread(target=publisher, daemon=True)
        worker.start()
        wait_for(lambda: len(acked) >= 30, what="30 events published through B")
        wait_for(
            lambda: topic.server_entities.get("o3") is not None, what="A delivering B's events"
        )
        a.kill()  # mid-stream
        wait_for(lambda: len(acked) >= 80, what="50 more events through B")
        stop.set()
        worker.join(15)
        truth = _snapshot(b, secret)
        wait_for(
            lambda: topic.status == "live" and topic.server_entities == truth,
            timeout=20,
            what="the client, failed over to B, to equal truth",
        )
        sequences = [e["sequence"] for e in acked]
        assert sequences == sorted(set(sequences)), "one sequence per acknowledged event"
        assert _applied_twice(conn) == [], "an event applied twice"
        assert conn.log.unrecoverable == 0, "a gap the replay should have covered"
        states = conn.log.states
        reasons = " ".join(str(r) for r in states["reason"])
        assert f"[gateway 1/2 {a.url}]" in reasons and f"[gateway 2/2 {b.url}]" in reasons
    finally:
        if conn is not None:
            conn.close()
        for gw in (a, b):
            gw.stop()


def test_redis_restart_with_aof_keeps_the_epoch_and_the_client_continuous(redis_aof, tmp_path):
    secret, (a,) = _gateways(redis_aof, tmp_path, n=1)
    conn = None
    try:
        for i in range(20):
            _publish(a, secret, f"o{i % 5}", {"n": i})
        conn = rtnb.connect(
            a.url, token=_token(secret, "viewer", "rider"), transport="websocket", shared=False
        )
        topic = conn.subscribe(TOPIC)
        wait_for(lambda: topic.status == "live", what="live")
        epoch = _publish(a, secret, "o0", {"n": 20})["id"].split("-")[1]
        redis_aof.kill()
        redis_aof.start()  # same port, same dir: the AOF (appendfsync always) is replayed
        event = wait_for(lambda: _try_publish(a, secret, "o1", {"n": 21}), what="publish again")
        assert event["id"].split("-")[1] == epoch, "a Redis with AOF keeps the epoch"
        assert event["sequence"] == 22, "no position reused, none skipped"
        truth = _snapshot(a, secret)
        wait_for(lambda: topic.server_entities == truth, what="the client to follow")
        assert conn.log.unrecoverable == 0
        assert _applied_twice(conn) == []
    finally:
        if conn is not None:
            conn.close()
        a.stop()


def _try_publish(gw: Gateway, secret: Path, entity: str, payload: dict[str, Any]) -> Any:
    try:
        return _publish(gw, secret, entity, payload)
    except httpx.HTTPStatusError as exc:
        assert exc.response.status_code == 503, exc.response.text
        return None


@pytest.mark.slow
def test_redis_restart_without_persistence_is_a_new_epoch_and_an_honest_gap(
    redis_volatile, tmp_path
):
    secret, (a, b) = _gateways(redis_volatile, tmp_path)
    conn = None
    try:
        for i in range(20):
            _publish(b, secret, f"o{i % 5}", {"n": i})
        conn = rtnb.connect(
            [a.url, b.url],
            token=_token(secret, "viewer", "rider"),
            transport="websocket",
            shared=False,
        )
        topic = conn.subscribe(TOPIC)
        wait_for(lambda: topic.status == "live" and len(topic.server_entities) == 5, what="live")
        old_epoch = _publish(b, secret, "o0", {"n": 20})["id"].split("-")[1]
        redis_volatile.kill()
        redis_volatile.start()  # empty: every stream is gone
        event = wait_for(lambda: _try_publish(b, secret, "new", {"n": 1}), what="publish again")
        assert event["id"].split("-")[1] != old_epoch, "Redis lost the stream: a new epoch"
        assert event["sequence"] == 1
        truth = _snapshot(b, secret)
        assert truth == {"new": {"n": 1}}
        wait_for(
            lambda: topic.status == "live" and topic.server_entities == truth,
            timeout=20,
            what="the client re-snapshotted under the new epoch",
        )
        assert conn.log.unrecoverable >= 1, "the lost events are logged as a gap"
        assert _snapshot(a, secret) == truth, "both gateways agree on the new epoch"
    finally:
        if conn is not None:
            conn.close()
        for gw in (a, b):
            gw.stop()


@pytest.mark.slow  # 320 publishes over 8 HTTP clients: ~3 s
def test_concurrent_publishers_on_two_gateways_never_share_a_sequence(redis_aof, tmp_path):
    secret, (a, b) = _gateways(redis_aof, tmp_path)
    acked: list[dict[str, Any]] = []
    lock = threading.Lock()
    per_worker = 40

    def worker(gw: Gateway, w: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(per_worker):
                response = client.post(
                    f"{gw.url}/publish",
                    json={
                        "topic": TOPIC,
                        "type": "order.updated",
                        "entityId": f"o{(w + i) % 5}",  # shared entities: base conflicts
                        "payload": {f"w{w}": i},
                    },
                    headers={"Authorization": f"Bearer {_token(secret)}"},
                )
                response.raise_for_status()
                with lock:
                    acked.append(response.json())

    try:
        threads = [
            threading.Thread(target=worker, args=(gw, w))
            for w, gw in enumerate([a, b] * 4)  # 8 concurrent publishers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        n = per_worker * len(threads)
        assert len(acked) == n
        sequences = sorted(e["sequence"] for e in acked)
        assert sequences == list(range(1, n + 1)), "each sequence assigned exactly once"
        assert len({e["id"] for e in acked}) == n
        client = redis.Redis.from_url(redis_aof.url)
        _, stream, state = keys_of(("acme", TOPIC))
        ids = [int(i.split(b"-")[0]) for i, _ in client.xrange(stream)]
        assert ids == list(range(1, n + 1)), "the stream holds each position once, in order"
        # every entity's state is the merge of its events in sequence order
        expected: dict[str, dict[str, Any]] = {}
        for e in sorted(acked, key=lambda e: e["sequence"]):
            expected.setdefault(e["entityId"], {}).update(e["payload"])
        wait_for(lambda: _snapshot(a, secret) == expected, what="gateway A to converge")
        assert _snapshot(b, secret) == expected
        stored = {k.decode(): v.split(b" ", 1)[1] for k, v in client.hgetall(state).items()}
        assert {k: json.loads(v) for k, v in stored.items()} == expected
    finally:
        for gw in (a, b):
            gw.stop()
