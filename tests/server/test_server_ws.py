"""WebSocket protocol round trips against a real server (DESIGN.md §3)."""

from __future__ import annotations

import time

import msgspec
import pytest

from rtnb.protocol.codec import decode_client_frame
from rtnb.protocol.frames import Event


def test_authenticate_answers_with_tenant_user_role_and_expiry(srv, connect):
    token = srv.issue_token(tenant="acme", user="ana", role="operator", ttl=60)
    client = connect(srv)
    frame = client.authenticate(token)
    assert frame["tenant"] == "acme" and frame["user"] == "ana" and frame["role"] == "operator"
    assert frame["expiresAt"] > 0


def test_subscribe_without_replay_sends_subscribed_then_snapshot_then_live_events(
    srv, connect, topic
):
    srv.publish(topic, "thing.created", {"a": 1}, tenant="acme", entity_id="e1")
    srv.publish(topic, "thing.created", {"a": 2}, tenant="acme", entity_id="e2")
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, snapshot = client.subscribe(topic)
    assert subscribed["replay"] == "none"
    assert subscribed["latestSequence"] == 2
    assert snapshot["sequence"] == 2
    assert {e["entityId"]: e["state"] for e in snapshot["entities"]} == {
        "e1": {"a": 1},
        "e2": {"a": 2},
    }
    assert snapshot["token"] == subscribed["latestToken"]
    srv.publish(topic, "thing.updated", {"b": 3}, tenant="acme", entity_id="e1")
    (event,) = client.events(topic, 1)
    assert event["sequence"] == 3
    assert event["payload"] == {"b": 3}
    assert event["entityId"] == "e1"


def test_every_server_frame_decodes_with_the_protocol_structs(srv, connect, topic):
    srv.publish(topic, "thing.created", {"a": 1}, tenant="acme", entity_id="e1")
    client = connect(srv)
    client.send({"op": "authenticate", "token": srv.issue_token(tenant="acme", user="u")})
    client.send({"op": "subscribe", "topic": topic})
    client.send({"op": "ping", "id": "p1"})
    client.send({"op": "snapshot", "topic": topic})
    ops: set[str] = set()
    published = False
    deadline = time.monotonic() + 5
    while not {"authenticated", "subscribed", "snapshot", "pong", "event", "heartbeat"} <= ops:
        assert time.monotonic() < deadline, f"only saw {sorted(ops)}"
        if "subscribed" in ops and not published:
            srv.publish(topic, "thing.updated", {"a": 2}, tenant="acme", entity_id="e1")
            published = True
        raw = client.ws.recv(timeout=5)
        frame = decode_client_frame(raw)  # raises InvalidFrame if the server broke the protocol
        inner = frame.messages if hasattr(frame, "messages") else [frame]
        ops.update(msgspec.json.decode(msgspec.json.encode(m))["op"] for m in inner)


def test_sequences_are_contiguous_per_tenant_and_topic_starting_at_one(srv, topic):
    a = [srv.publish(topic, "x.set", {"i": i}, tenant="t-a", entity_id="e") for i in range(3)]
    b = [srv.publish(topic, "x.set", {"i": i}, tenant="t-b", entity_id="e") for i in range(2)]
    assert [e.sequence for e in a] == [1, 2, 3]
    assert [e.sequence for e in b] == [1, 2]
    assert len({e.id for e in a + b}) == 5


def test_ping_is_answered_with_pong_carrying_the_same_id(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send({"op": "ping", "id": "abc"})
    pong = client.expect("pong")
    assert pong["id"] == "abc" and pong["serverTime"] > 0


def test_snapshot_request_returns_the_current_state_without_subscribing(srv, connect, topic):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    srv.publish(topic, "x.deleted", {}, tenant="acme", entity_id="e")
    srv.publish(topic, "x.set", {"v": 2}, tenant="acme", entity_id="f")
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send({"op": "snapshot", "topic": topic})
    snap = client.expect("snapshot")
    assert snap["sequence"] == 3
    assert snap["entities"] == [{"entityId": "f", "state": {"v": 2}, "sequence": 3}]


def test_unsubscribe_stops_live_events(srv, connect, topic):
    other = topic + "-other"
    srv.declare(other)
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    srv.declare(topic)
    client.subscribe(topic)
    client.subscribe(other)
    client.send({"op": "unsubscribe", "topic": topic})
    client.send({"op": "ping", "id": "fence"})
    client.expect("pong")
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    srv.publish(other, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    (event,) = client.events(other, 1)
    assert all(f.get("topic") != topic for f in client.received if f["op"] == "event")
    assert event["topic"] == other


def test_heartbeats_carry_the_latest_token_and_sequence_of_each_subscribed_topic(
    srv, connect, topic
):
    srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.subscribe(topic)
    last = srv.publish(topic, "x.set", {"v": 2}, tenant="acme", entity_id="e")
    beat = client.until(lambda f: f["op"] == "heartbeat" and f["sequences"].get(topic) == 2)[-1]
    assert beat["topics"][topic] == last.replay_token
    assert beat["serverTime"] > 0


def test_subscribing_to_an_undeclared_topic_answers_unknown_topic(srv, connect):
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    client.send({"op": "subscribe", "topic": "never-published"})
    error = client.expect("error")
    assert error["code"] == "unknown_topic" and error["topic"] == "never-published"
    client.send({"op": "ping", "id": "still-open"})
    assert client.expect("pong")["id"] == "still-open"


def test_a_declared_topic_with_no_events_subscribes_with_an_empty_snapshot(srv, connect, topic):
    srv.declare(topic)
    client = connect(srv, srv.issue_token(tenant="globex", user="gus"))
    subscribed, snapshot = client.subscribe(topic)
    assert subscribed["latestSequence"] == 0
    assert snapshot["entities"] == [] and snapshot["sequence"] == 0


def test_publish_returns_the_event_with_an_opaque_replay_token(srv, topic):
    event = srv.publish(topic, "x.set", {"v": 1}, tenant="acme", entity_id="e")
    assert isinstance(event, Event)
    assert event.replay_token and "acme" not in event.replay_token
    assert "<redacted>" in repr(event)


def test_publish_refuses_a_payload_that_is_not_json(srv, topic):
    with pytest.raises(TypeError, match="JSON"):
        srv.publish(topic, "x.set", {"v": object()}, tenant="acme", entity_id="e")
    with pytest.raises(ValueError, match="topic"):
        srv.publish("bad topic!", "x.set", {}, tenant="acme", entity_id="e")


def test_truth_is_a_copy_in_json_types(srv, topic):
    srv.publish(topic, "x.set", {"v": (1, 2), "n": {"k": 1}}, tenant="acme", entity_id="e")
    truth = srv.truth(topic, tenant="acme")
    assert truth == {"e": {"v": [1, 2], "n": {"k": 1}}}
    truth["e"]["n"]["k"] = 99
    assert srv.truth(topic, tenant="acme")["e"]["n"]["k"] == 1


def test_state_is_merged_shallowly_and_client_mutation_ids_are_not_state(srv, topic):
    srv.publish(topic, "x.created", {"a": 1, "b": {"c": 1}}, tenant="acme", entity_id="e")
    srv.publish(
        topic, "x.updated", {"b": {"d": 2}, "clientMutationId": "m"}, tenant="acme", entity_id="e"
    )
    assert srv.truth(topic, tenant="acme") == {"e": {"a": 1, "b": {"d": 2}}}


@pytest.mark.slow
def test_a_large_snapshot_is_split_into_frames_under_the_client_limit(srv, connect):
    import json

    from rtnb.protocol import DEFAULT_MAX_FRAME_SIZE

    srv.publish_many(
        "big",
        [("item.set", f"item-{i}", {"text": "x" * 200, "i": i}) for i in range(20_000)],
        tenant="acme",
    )
    client = connect(srv, srv.issue_token(tenant="acme", user="ana"))
    subscribed, first = client.subscribe("big")
    assert subscribed["replay"] == "none"
    parts = [first]
    while parts[-1].get("more"):
        frame = client.recv()
        assert frame["op"] == "snapshot"
        parts.append(frame)
    assert len(parts) > 1
    assert all(p["sequence"] == 20_000 for p in parts)
    assert sum(len(p["entities"]) for p in parts) == 20_000
    assert max(len(json.dumps(p)) for p in parts) < DEFAULT_MAX_FRAME_SIZE
