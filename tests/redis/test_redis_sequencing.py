"""Property: concurrent publishers on two gateways sharing one Redis never share a sequence.

Two in-process gateways (``rtnb.serve(store=redis://…)``) on one real ``redis-server``;
hypothesis draws a set of publishers (gateway, topic, entities, how many events), they
all start at once from their own threads, and every acknowledged event is checked
against the stream: each sequence assigned once, contiguous from 1, and the stream
holds exactly the acknowledged events in sequence order. Rounds that carry several
topics go through the pipelined commit (one round trip for every topic of the round).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rtnb
from rtnb.server.handle import ServerHandle
from rtnb.server.redis_store import keys_of
from tests.redis.conftest import RedisServer, wait_for

SECRET = "sequencing-secret-" * 3
_names = itertools.count()

publisher = st.tuples(
    st.integers(0, 1),  # gateway
    st.sampled_from(["p", "q"]),  # topic (suffixed per example: every stream starts at 1)
    st.lists(st.sampled_from(["e0", "e1", "e2"]), min_size=1, max_size=6),  # its events
)


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(shared_redis: RedisServer) -> Iterator[tuple[ServerHandle, ServerHandle]]:
    a = rtnb.serve(store=shared_redis.url, secret=SECRET, heartbeat_interval=5.0)
    b = rtnb.serve(store=shared_redis.url, secret=SECRET, heartbeat_interval=5.0)
    yield a, b
    a.stop()
    b.stop()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(publisher, min_size=2, max_size=8))
def test_concurrent_publishers_never_share_a_sequence_and_the_stream_is_what_was_acked(
    gateways: tuple[ServerHandle, ServerHandle],
    shared_redis: RedisServer,
    plan: list[tuple[int, str, list[str]]],
) -> None:
    run = next(_names)
    topics = {name: f"{name}{run}" for name in ("p", "q")}
    acked: dict[str, list[Any]] = {t: [] for t in topics.values()}
    lock = threading.Lock()
    start = threading.Barrier(len(plan))
    errors: list[BaseException] = []

    def publish(w: int, gw: int, topic: str, entities: list[str]) -> None:
        srv = gateways[gw]
        try:
            start.wait(10)
            for k, entity in enumerate(entities):
                event = srv.publish(topic, "x.set", {f"w{w}": k}, tenant="acme", entity_id=entity)
                with lock:
                    acked[topic].append(event)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [
        threading.Thread(target=publish, args=(w, gw, topics[name], entities))
        for w, (gw, name, entities) in enumerate(plan)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    client = redis.Redis.from_url(shared_redis.url)
    for topic, events in acked.items():
        n = sum(len(e) for _, name, e in plan if topics[name] == topic)
        assert len(events) == n, "every publish was acknowledged"
        events.sort(key=lambda e: e.sequence)
        assert [e.sequence for e in events] == list(range(1, n + 1)), (
            "each sequence assigned once, contiguous"
        )
        assert len({e.id for e in events}) == n
        _, stream, _ = keys_of(("acme", topic))
        stored = [
            (int(i.split(b"-")[0]), msgspec.json.decode(f[b"b"])) for i, f in client.xrange(stream)
        ]
        assert [s for s, _ in stored] == [e.sequence for e in events]
        assert [(b[0], b[2]) for _, b in stored] == [(e.entity_id, e.payload) for e in events], (
            "the stream holds exactly the acknowledged events, in sequence order"
        )
        truth: dict[str, dict[str, Any]] = {}
        for e in events:
            truth.setdefault(e.entity_id, {}).update(e.payload)
        for srv in gateways:
            wait_for(
                lambda srv=srv, topic=topic, truth=truth: srv.truth(topic, tenant="acme") == truth,
                what="convergence",
            )
