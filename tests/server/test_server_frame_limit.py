"""One frame-size contract, in bytes, end to end (``DEFAULT_MAX_FRAME_SIZE``).

The server refuses any publish or patch whose event frame, or whose entity's
resulting state in a snapshot, could not be delivered under the limit — so
everything it accepts, a fresh client receives.
"""

from __future__ import annotations

import json
import uuid

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rtnb
from rtnb.protocol.codec import DEFAULT_MAX_FRAME_SIZE, frame_bytes
from rtnb.server.storage import MemoryStorage
from rtnb.server.tokens import ReplayTokens
from rtnb.server.topiclog import TopicLog

LIMIT = DEFAULT_MAX_FRAME_SIZE


def _next_raw(client, op: str) -> str:
    """The next raw text frame with ``op`` (heartbeats skipped), exactly as received."""
    while True:
        text = client.ws.recv(timeout=10)
        if json.loads(text)["op"] == op:
            return text


def _accepts(srv, topic: str, entity_id: str, blob: str) -> bool:
    try:
        srv.publish(topic, "x.set", {"blob": blob}, tenant="acme", entity_id=entity_id)
    except ValueError as exc:
        assert "frame limit" in str(exc) and f"{LIMIT:,}" in str(exc)
        return False
    return True


@pytest.mark.parametrize("char", ["x", "é", "€"], ids=["ascii", "2-byte", "3-byte"])
def test_a_publish_at_the_limit_is_delivered_and_one_byte_more_is_refused(
    make_server, connect, wait_until, topic, char
):
    srv = make_server()
    # The largest accepted payload, found by bisection over its length in characters.
    lo, hi = 1, LIMIT
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _accepts(srv, topic, "big", char * mid):
            lo = mid
        else:
            hi = mid - 1
    assert _accepts(srv, topic, "big", char * lo)
    assert not _accepts(srv, topic, "big", char * (lo + 1))
    admin = srv.issue_token(tenant="acme", user="ops", role="admin")
    refused = httpx.post(
        f"{srv.url}/publish",
        json={
            "topic": topic,
            "type": "x.set",
            "entityId": "big",
            "payload": {"blob": char * (lo + 1)},
        },
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    assert refused.status_code == 413
    assert refused.json()["code"] == "too_large" and "frame limit" in refused.json()["message"]

    # What was accepted travels: raw frames within the limit, in bytes, and close to it.
    raw = connect(srv, srv.issue_token(tenant="acme", user="raw"), max_size=None)
    raw.send({"op": "subscribe", "topic": topic})
    raw.expect("subscribed")
    snapshot_bytes = len(_next_raw(raw, "snapshot").encode())
    srv.publish(topic, "x.set", {"blob": char * lo}, tenant="acme", entity_id="big")
    event_bytes = len(_next_raw(raw, "event").encode())
    assert max(snapshot_bytes, event_bytes) <= LIMIT
    assert max(snapshot_bytes, event_bytes) > LIMIT - 64 * len(char.encode())

    # A fresh client equals truth, live, on every transport, and receives the next
    # event at the limit live.
    truth = srv.truth(topic, tenant="acme")
    conns = []
    try:
        topics = {}
        got: dict[str, list[int]] = {}
        for transport in ("websocket", "sse", "polling"):
            conn = rtnb.connect(
                srv.url,
                token=srv.issue_token(tenant="acme", user=f"ana-{transport}"),
                transport=transport,
                shared=False,
            )
            conns.append(conn)
            topics[transport] = fresh = conn.subscribe(topic)
            got[transport] = []
            fresh.on_event(lambda ev, outcome, t=transport: got[t].append(ev.sequence))
        for transport, fresh in topics.items():
            wait_until(
                lambda f=fresh: f.server_entities == truth and f.status == "live",
                timeout=10,
                what=transport,
            )
        # (4 characters less: the sequence and id may have grown a digit since)
        blob = char * (lo - 4)
        event = srv.publish(topic, "x.set", {"blob": blob}, tenant="acme", entity_id="big")
        for transport, fresh in topics.items():
            wait_until(lambda t=transport: event.sequence in got[t], timeout=10, what=transport)
            assert fresh.server_entities == srv.truth(topic, tenant="acme")
            assert fresh.freshness.gaps == 0 and fresh.status == "live"
    finally:
        for conn in conns:
            conn.close()


def test_an_entity_grown_by_patches_is_refused_before_it_outgrows_a_frame(
    make_server, connect, wait_until, topic
):
    srv = make_server()
    srv.publish(topic, "x.set", {"n": 0}, tenant="acme", entity_id="grow")
    operator = srv.issue_token(tenant="acme", user="op", role="operator")
    headers = {"Authorization": f"Bearer {operator}"}
    field = "y" * 60_000
    status = 200
    with httpx.Client(timeout=10) as http:
        for i in range(40):  # 40 x 60 kB would be 2.4 MB
            body = {
                "op": "mutate",
                "topic": topic,
                "entityId": "grow",
                "patch": {f"f{i}": field},
                "clientMutationId": uuid.uuid4().hex,
            }
            response = http.post(f"{srv.url}/mutate", json=body, headers=headers)
            status = response.status_code
            if status != 200:
                break
    assert status == 413, response.text
    assert response.json()["code"] == "too_large"
    assert "snapshot" in response.json()["message"]
    grown = srv.truth(topic, tenant="acme")["grow"]
    assert 15 <= len(grown) <= 18  # about 1 MiB of 60 kB fields
    # Over WebSocket: mutation_rejected with the same code.
    ws = connect(srv, operator)
    cmid = uuid.uuid4().hex
    patch = {"op": "mutate", "topic": topic, "entityId": "grow", "patch": {"more": field}}
    ws.send({**patch, "clientMutationId": cmid})
    rejected = ws.expect("mutation_rejected")
    assert rejected["code"] == "too_large" and rejected["clientMutationId"] == cmid
    # The entity as it stands still reaches a fresh client in one snapshot frame.
    raw = connect(srv, srv.issue_token(tenant="acme", user="raw"), max_size=None)
    raw.send({"op": "subscribe", "topic": topic})
    raw.expect("subscribed")
    text = _next_raw(raw, "snapshot")
    assert len(text.encode()) <= DEFAULT_MAX_FRAME_SIZE
    assert json.loads(text)["entities"][0]["state"] == grown


@settings(max_examples=200, deadline=None)
@given(text=st.text(), limit=st.integers(1, 400))
def test_frame_bytes_is_exact_whenever_it_matters(text, limit):
    exact = len(text.encode())
    assert (frame_bytes(text, limit) > limit) == (exact > limit)
    assert frame_bytes(text.encode(), limit) == exact


@settings(max_examples=60, deadline=None)
@given(
    states=st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
        min_size=1,
        max_size=60,
    ),
    max_bytes=st.integers(600, 3000),
)
def test_snapshot_parts_are_split_by_encoded_bytes(states, max_bytes):
    log = TopicLog("acme", "t", MemoryStorage(), ReplayTokens(b"k" * 32), retention=100)
    for i, value in enumerate(states):
        log.append("x.set", {"v": value}, f"e{i}")
    texts = log.snapshot_texts(max_bytes)
    frames = [msgspec.json.decode(t) for t in texts]
    for text, frame in zip(texts, frames, strict=True):
        assert len(text.encode()) <= max_bytes or len(frame["entities"]) == 1
        assert frame["token"] == log.token() and frame["sequence"] == log.latest
    assert [f["more"] for f in frames] == [True] * (len(frames) - 1) + [False]
    whole = msgspec.json.decode(msgspec.json.encode(log.snapshot()))
    assert [e for f in frames for e in f["entities"]] == whole["entities"]
