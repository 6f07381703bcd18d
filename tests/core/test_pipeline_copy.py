"""A deep copy of a ``Pipeline`` (a replay checkpoint is one) is a pipeline of its own:
what it is fed changes its topics, never the original's."""

from __future__ import annotations

import copy

from rtnb.core.pipeline import Pipeline
from rtnb.protocol import Subscribed, encode
from tests.helpers import event, snapshot


def _copy(p: Pipeline) -> Pipeline:
    """As a replay checkpoint copies it: sharing the decoder and the log."""
    return copy.deepcopy(p, {id(p.decoder): p.decoder, id(p.log): p.log})


def _subscribed(p: Pipeline) -> None:
    p.add_topic("a")
    p.feed(encode(Subscribed(topic="a", replay="none")), 0.0)
    p.feed(encode(snapshot("a", 0, {})), 0.0)


def test_a_deep_copied_pipeline_applies_to_its_own_topics_not_the_originals() -> None:
    original = Pipeline()
    _subscribed(original)
    original.feed(encode(event(1, topic="a", entity="e", payload={"v": 1})), 1.0)
    clone = _copy(original)
    assert clone.topics["a"] is not original.topics["a"]

    # a single-event frame (the fast path) and a batch both go to the copy's state
    clone.feed(encode(event(2, topic="a", entity="e", payload={"v": 2})), 2.0)
    clone.feed(encode(event(3, topic="a", entity="f", payload={"v": 3})), 3.0)

    assert clone.topics["a"].store.view("e") == {"v": 2}
    assert clone.topics["a"].store.view("f") == {"v": 3}
    assert clone.topics["a"].applied == original.topics["a"].applied + 2
    assert original.topics["a"].store.view("e") == {"v": 1}  # the original is untouched
    assert original.topics["a"].store.view("f") is None


def test_a_topic_added_to_the_copy_only_is_found_by_the_copy() -> None:
    original = Pipeline()
    _subscribed(original)
    clone = _copy(original)
    clone.add_topic("b")
    clone.feed(encode(Subscribed(topic="b", replay="none")), 0.0)
    clone.feed(encode(snapshot("b", 0, {})), 0.0)
    clone.feed(encode(event(1, topic="b", entity="x", payload={"v": 1})), 1.0)
    assert clone.topics["b"].store.view("x") == {"v": 1}
    assert "b" not in original.topics
