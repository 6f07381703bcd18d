"""The pipeline's inputs other than frames: method calls in, what happened out.

Issue 21 item 1: a driver never sets ``pipeline.fault`` / ``resolved`` / ``on_apply``
or touches a topic's store; it calls these methods and routes their results.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from rtnb.core.ledger import MutationLedger
from rtnb.core.pipeline import Pipeline
from rtnb.core.store import PENDING_FIELD
from rtnb.protocol import MutationRejected, Snapshot, SnapshotEntity, Subscribed, encode
from tests.helpers import event, snapshot


def _live(p: Pipeline, topic: str = "incidents") -> None:
    p.feed(encode(Subscribed(topic=topic, replay="none")), 0.0)
    p.feed(encode(snapshot(topic, 0, {"a": {"n": 0}})), 0.0)


def test_a_fault_is_handed_over_once() -> None:
    p = Pipeline(max_snapshot_entities=2)
    p.add_topic("incidents")
    p.feed(encode(Subscribed(topic="incidents", replay="none")), 0.0)
    parts = [SnapshotEntity(entity_id=f"e{i}", state={}, sequence=1) for i in range(3)]
    p.feed(encode(Snapshot(topic="incidents", entities=parts, sequence=1, more=True)), 0.0)
    fault = p.take_fault()
    assert fault is not None and "max_snapshot_entities" in fault
    assert p.take_fault() is None


def test_a_mutation_is_laid_over_its_entity_until_the_server_rejects_it() -> None:
    p = Pipeline()
    p.add_topic("incidents")
    _live(p)
    rec = p.mutate("m1", "incidents", "a", {"n": 9}, now=1.0, timeout=5.0, degraded=False)
    assert rec.status == "pending"
    assert p.topics["incidents"].store.view("a") == {"n": 9, PENDING_FIELD: True}
    assert p.take_resolved() == []
    rejected = MutationRejected(client_mutation_id="m1", code="invalid", message="no")
    p.feed(encode(rejected), 2.0)
    assert [r.client_mutation_id for r in p.take_resolved()] == ["m1"]
    assert p.take_resolved() == []
    assert p.topics["incidents"].store.view("a") == {"n": 0}


def test_a_refused_mutation_leaves_no_overlay() -> None:
    p = Pipeline(ledger=MutationLedger(on_degraded="reject"))
    p.add_topic("incidents")
    _live(p)
    rec = p.mutate("m1", "incidents", "a", {"n": 9}, now=1.0, timeout=5.0, degraded=True)
    assert rec.status == "refused"
    assert p.topics["incidents"].store.view("a") == {"n": 0}


def test_expired_and_cancelled_mutations_come_back_with_their_overlays_dropped() -> None:
    p = Pipeline()
    p.add_topic("incidents")
    _live(p)
    p.mutate("m1", "incidents", "a", {"n": 1}, now=0.0, timeout=1.0, degraded=False)
    p.mutate("m2", "incidents", "a", {"n": 2}, now=0.0, timeout=60.0, degraded=False)
    expired = p.expire_mutations(5.0)
    assert [(r.client_mutation_id, r.status) for r in expired] == [("m1", "timed_out")]
    assert p.topics["incidents"].store.view("a") == {"n": 2, PENDING_FIELD: True}
    cancelled = p.cancel_mutations(6.0, "connection closed")
    assert [(r.client_mutation_id, r.status) for r in cancelled] == [("m2", "cancelled")]
    assert p.topics["incidents"].store.view("a") == {"n": 0}


def test_mutating_a_topic_not_subscribed_says_so() -> None:
    p = Pipeline()
    with pytest.raises(ValueError, match="not subscribed to 'nope'; subscribe before"):
        p.mutate("m1", "nope", "a", {"n": 1}, now=0.0, timeout=1.0, degraded=False)


def test_the_apply_hook_is_an_input() -> None:
    p = Pipeline()
    p.add_topic("incidents")
    _live(p)
    seen: list[Any] = []
    p.set_on_apply(lambda ts, ev, outcome: seen.append((ts.name, ev.sequence, str(outcome))))
    p.feed(encode(event(1)), 1.0)
    p.set_on_apply(None)
    p.feed(encode(event(2)), 1.0)
    assert seen == [("incidents", 1, "applied")]


def test_a_replays_topic_state_object_lives_across_reset_attach_and_restore() -> None:
    """What a replay does: one TopicState per topic for its whole life, its contents
    cleared (a new subscription) or taken from a checkpoint's copy, never replaced."""
    p = Pipeline()
    state = p.new_topic_state("incidents", "sequence", gap_timeout=2.0)
    assert "incidents" not in p.topics
    p.attach_topic(state, "sequence", gap_timeout=2.0)
    assert p.topics["incidents"] is state
    _live(p)
    p.feed(encode(event(1, entity="a", payload={"n": 1})), 1.0)
    saved = copy.deepcopy(p, {id(p.decoder): p.decoder})  # as the replay's checkpoints
    p.feed(encode(event(2, entity="a", payload={"n": 2})), 2.0)
    assert state.applied == 2 and state.status == "live"

    # restore: the copy's contents move into the live object
    fleet = p.new_topic_state("fleet", "none", gap_timeout=2.0)
    absent = saved.adopt_topics({"incidents": state, "fleet": fleet})
    assert saved.topics["incidents"] is state
    assert absent == [fleet]
    assert state.applied == 1 and state.store.entities["a"]["n"] == 1
    assert state.orderer.position() == 1

    # reset: a fresh subscription's state, in the same object
    saved.reset_topic(state, "sequence", gap_timeout=2.0)
    assert state.status == "pending" and state.applied == 0 and not state.store.entities
    assert state.last_token is None and state.orderer.position() is None
    assert msgspec.json.encode(state.store.views()) == b"{}"
