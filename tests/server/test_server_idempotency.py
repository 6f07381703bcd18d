"""Idempotency keys on the in-memory and SQLite stores: publishId and clientMutationId.

A retry with a key already stored answers the original event (the same frame: id,
sequence, replay token, time) and stores nothing, across restarts with ``--data``
(a server killed with SIGKILL). The memory of keys is bounded in bytes and in time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.server.auth import TokenAuthority
from rtnb.server.idempotency import ENTRY_OVERHEAD, Applied, Remembered, digest
from rtnb.server.runner import SECRET_FILE
from tests.subproc import ServeProcess, free_port

TOPIC = "orders"


def _headers(srv: Any, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.issue_token(tenant='acme', user='u', role=role)}"}


def test_a_publish_retried_with_its_publish_id_answers_the_original_and_stores_nothing(
    make_server,
):
    srv = make_server()
    first = srv.publish(TOPIC, "o.set", {"v": 1}, tenant="acme", entity_id="a", publish_id="k1")
    again = srv.publish(TOPIC, "o.set", {"v": 1}, tenant="acme", entity_id="a", publish_id="k1")
    assert again == first, "the same event: id, sequence, replay token, time, payload"
    assert srv.latest_sequence(TOPIC, tenant="acme") == 1
    with pytest.raises(ValueError, match="publishId was already used for a different publish"):
        srv.publish(TOPIC, "o.set", {"v": 2}, tenant="acme", entity_id="a", publish_id="k1")
    other_tenant = srv.publish(
        TOPIC, "o.set", {"v": 1}, tenant="globex", entity_id="a", publish_id="k1"
    )
    assert other_tenant.sequence == 1 and other_tenant.id != first.id  # keys are per topic
    assert srv.publish(TOPIC, "o.set", {"v": 3}, tenant="acme", entity_id="a").sequence == 2

    body = {"topic": TOPIC, "type": "o.set", "entityId": "b", "payload": {"x": 1}}
    answers = [
        httpx.post(f"{srv.url}/publish", json={**body, "publishId": "h1"}, headers=_headers(srv))
        for _ in range(3)
    ]
    assert [r.status_code for r in answers] == [200] * 3
    assert len({r.text for r in answers}) == 1 and answers[0].json()["sequence"] == 3
    conflict = httpx.post(
        f"{srv.url}/publish",
        json={**body, "payload": {"x": 2}, "publishId": "h1"},
        headers=_headers(srv),
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"
    bad = httpx.post(f"{srv.url}/publish", json={**body, "publishId": ""}, headers=_headers(srv))
    assert bad.status_code == 400 and "publishId" in bad.json()["message"]

    batch = srv.publish_many(
        TOPIC,
        [("o.set", "a", {"v": 1}, "k1"), ("o.set", "c", {"v": 4}, "k4"), ("o.set", "d", {})],
        tenant="acme",
    )
    assert batch[0] == first and [e.sequence for e in batch[1:]] == [4, 5]
    assert srv.publish_many(TOPIC, [("o.set", "c", {"v": 4}, "k4")], tenant="acme") == [batch[1]]
    assert srv.latest_sequence(TOPIC, tenant="acme") == 5
    assert srv.truth(TOPIC, tenant="acme") == {
        "a": {"v": 3},
        "b": {"x": 1},
        "c": {"v": 4},
        "d": {},
    }


def test_a_mutation_retried_answers_its_event_and_a_rejection_is_not_remembered(make_server):
    srv = make_server()
    srv.publish(TOPIC, "o.set", {"v": 1}, tenant="acme", entity_id="a")
    body = {"topic": TOPIC, "entityId": "a", "patch": {"n": 1}, "clientMutationId": "m1"}
    op = _headers(srv, "operator")
    answers = [httpx.post(f"{srv.url}/mutate", json=body, headers=op) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].text == answers[1].text
    assert srv.latest_sequence(TOPIC, tenant="acme") == 2
    other = httpx.post(f"{srv.url}/mutate", json={**body, "patch": {"n": 2}}, headers=op)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    missing = {**body, "entityId": "nope", "clientMutationId": "m2"}
    assert httpx.post(f"{srv.url}/mutate", json=missing, headers=op).status_code == 404
    srv.publish(TOPIC, "o.set", {"v": 1}, tenant="acme", entity_id="nope")
    assert httpx.post(f"{srv.url}/mutate", json=missing, headers=op).status_code == 200


class Server(ServeProcess):
    """``python -m rtnb serve --data DIR --port P`` in a subprocess."""

    def __init__(self, data: Path) -> None:
        super().__init__(("--data", str(data)), free_port(), data.parent / "server.err")
        self.data = data

    def headers(self, role: str = "admin") -> dict[str, str]:
        key = bytes.fromhex((self.data / SECRET_FILE).read_text().strip())
        token = TokenAuthority(key).issue(tenant="acme", user="u", role=role, ttl=600)
        return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
def test_keys_survive_a_sigkill_of_a_server_with_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data)
    server.start()
    try:
        publish = {"topic": TOPIC, "type": "o.set", "entityId": "a", "payload": {"v": 1}}
        keyed = {**publish, "publishId": "p-1"}
        first = httpx.post(f"{server.url}/publish", json=keyed, headers=server.headers())
        assert first.status_code == 200, first.text
        mutation = {"topic": TOPIC, "entityId": "a", "patch": {"n": 1}, "clientMutationId": "m"}
        op = server.headers("operator")
        applied = httpx.post(f"{server.url}/mutate", json=mutation, headers=op)
        assert applied.status_code == 200, applied.text
        server.kill()  # SIGKILL: acknowledged means durable, keys included
        server = Server(data)
        server.start()
        again = httpx.post(f"{server.url}/publish", json=keyed, headers=server.headers())
        assert again.status_code == 200 and again.text == first.text
        retried = httpx.post(f"{server.url}/mutate", json=mutation, headers=op)
        assert retried.status_code == 200 and retried.text == applied.text
        nxt = httpx.post(f"{server.url}/publish", json=publish, headers=server.headers())
        assert nxt.json()["sequence"] == 3, "the retries stored nothing"
    finally:
        server.stop()


# -- the memory of keys: bounded in bytes and in time ----------------------------------------


def _applied(seq: int, event_type: str = "o.set") -> Applied:
    from datetime import UTC, datetime

    return Applied(digest(seq), b"\x01" * 8, seq, datetime(2026, 1, 1, tzinfo=UTC), event_type)


@given(
    names=st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=200),
    cap=st.integers(min_value=0, max_value=20_000),
)
def test_remembered_keys_never_exceed_their_byte_cap_and_keep_the_newest(names, cap):
    now = [0.0]
    mem = Remembered(max_bytes=cap, window=100.0, clock=lambda: now[0])
    for i, name in enumerate(names):
        now[0] += 0.01
        mem.put(("acme", TOPIC), name, _applied(i))
        assert mem.bytes <= cap
        assert mem.bytes == sum(
            Remembered.cost(k, Applied(*e[:5])) for k, e in mem._entries.items()
        )
    last = names[-1]
    if Remembered.cost(("acme", TOPIC, last), _applied(0)) <= cap:
        assert mem.get(("acme", TOPIC), last) is not None, "the newest key is kept"


def test_remembered_keys_expire_after_the_window() -> None:
    now = [1000.0]
    mem = Remembered(max_bytes=10**6, window=60.0, clock=lambda: now[0])
    mem.put(("acme", TOPIC), "old", _applied(1))
    now[0] += 30
    mem.put(("acme", TOPIC), "new", _applied(2))
    assert mem.get(("acme", TOPIC), "old") == _applied(1)
    now[0] += 31
    assert mem.get(("acme", TOPIC), "old") is None and mem.get(("acme", TOPIC), "new")
    mem.put(("acme", TOPIC), "newer", _applied(3))
    assert len(mem) == 2
    now[0] += 61
    mem.put(("acme", TOPIC), "last", _applied(4))
    mem.sweep()  # (every 1,024 inserts; a key past the window is never answered anyway)
    assert len(mem) == 1 and mem.bytes == Remembered.cost(("acme", TOPIC, "last"), _applied(4))


def test_entry_overhead_covers_what_one_remembered_key_really_costs() -> None:
    """:data:`ENTRY_OVERHEAD` is an upper bound of the Python objects behind one key."""
    mem = Remembered(max_bytes=10**6, window=60.0)
    applied = _applied(123_456)
    mem.put(("acme", TOPIC), "k", applied)
    key, entry = next(iter(mem._entries.items()))
    parts = [key, *key, entry, *entry]
    node = 100  # an OrderedDict entry: the dict slot plus its linked-list node
    measured = sum(map(sys.getsizeof, parts)) + node
    strings = sum(map(len, key)) + len(applied.type) + len(applied.epoch)
    assert measured - strings <= ENTRY_OVERHEAD, measured


@pytest.mark.slow
def test_mutation_ids_with_large_patches_are_remembered_in_few_bytes() -> None:
    """The issue's attack at small scale: 400 mutations with 55 KB patches (3,000 fields).

    The code before kept every applied mutation's whole event (~620 KiB of Python objects
    each, 100,000 of them: ~60 GiB from one operator token): 400 of them grew the server
    by ~250 MiB. Now a key keeps only what answering a retry needs (~800 bytes); with a
    retention of 20 events the server must grow by far less.
    """
    from tests.server.test_server_limits import _subprocess_server

    args = ("retention=20", "http_rate_limit=null")
    with _subprocess_server(*args) as server, httpx.Client(base_url=server.url) as client:
        headers = {"Authorization": f"Bearer {server.admin}"}
        created = {"topic": "t", "type": "t.set", "entityId": "e", "payload": {"v": 0}}
        assert client.post("/publish", json=created, headers=headers).status_code == 200
        before = server.stats()["rss"]
        for n in range(400):
            patch = {f"f{i}": f"{n:08d}" for i in range(3000)}
            mutation = {"topic": "t", "entityId": "e", "patch": patch, "clientMutationId": f"m{n}"}
            answer = client.post("/mutate", json=mutation, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
        grown = server.stats()["rss"] - before
        retry = client.post("/mutate", json=mutation, headers=headers, timeout=30)
        assert retry.status_code == 200 and retry.json()["sequence"] == 401, "still remembered"
    assert grown < 48 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
