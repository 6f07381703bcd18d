"""``TopicView`` and ``RowCursor``: what widgets read of a topic, made by the client
from the pipeline's ``TopicState`` (driven by hand here: no server, no loop)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.client.source import PENDING_FIELD, RowCursor, TopicView
from rtnb.client.topic_view import topic_view
from rtnb.core.pipeline import Pipeline, TopicState


def _topic(name: str = "t") -> TopicState:
    ts = Pipeline().add_topic(name, "sequence")
    ts.store.replace([("a", {"x": 1}, 1), ("b", {"x": 2}, 2)])
    return ts


def test_a_view_is_the_topics_facts_at_one_instant_and_cannot_change() -> None:
    ts = _topic()
    ts.status = "replaying"
    ts.last_event_at, ts.stale_after, ts.gaps, ts.unrecoverable = 10.0, 5.0, 2, 7
    ts.replay_until = 1240
    ts.orderer.reset(1000, {})
    view = topic_view(ts)
    assert (view.name, view.status, view.entities, view.missing) == ("t", "replaying", 2, 240)
    assert (view.last_event_at, view.stale_after, view.gaps, view.unrecoverable) == (
        10.0,
        5.0,
        2,
        7,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.status = "live"  # type: ignore[misc]
    ts.status, ts.gaps = "live", 3
    ts.store.apply("c", "t.updated", {"x": 3}, 3)
    assert (view.status, view.gaps, view.entities) == ("replaying", 2, 2)  # a snapshot
    assert topic_view(ts).entities == 3


def test_a_refused_topic_and_a_frozen_one_say_why() -> None:
    ts = _topic()
    ts.status = "unknown"
    ts.error, ts.error_code = "topic 'x' does not exist", "unknown_topic"
    view = topic_view(ts)
    assert view.refusal == "topic 'x' does not exist (unknown_topic)"
    assert view.error == "topic 'x' does not exist"
    ts.over_limit = "state over 1 MiB"
    assert topic_view(ts).status == "stale" and topic_view(ts).over_limit == "state over 1 MiB"
    assert topic_view(_topic()).refusal is None


def test_a_cursor_reads_rows_with_pending_patches_and_the_ids_changed_since_its_last_take() -> None:
    ts = _topic()
    with RowCursor(ts) as rows:
        assert rows.name == "t" and len(rows) == 2 and isinstance(rows.view(), TopicView)
        assert rows.changed
        reset, _ = rows.take()
        assert reset and not rows.changed  # the first take starts from every row
        assert rows.rows() == {"a": {"x": 1}, "b": {"x": 2}}
        assert rows.reader()("a") == rows.row("a") == {"x": 1}  # no patch pending: a dict lookup
        ts.store.add_pending("a", "m1", {"x": 9})
        ts.store.apply("b", "t.deleted", {}, 3)
        assert rows.changed
        reset, ids = rows.take()
        assert not reset and set(ids) == {"a", "b"}
        assert rows.row("a") == {"x": 9, PENDING_FIELD: True} and rows.row("b") is None
        assert rows.reader()("a") == rows.row("a") and rows.reader()("b") is None
        assert list(rows.ids()) == ["a"]
    ts.store.apply("c", "t.updated", {"x": 3}, 4)
    assert not rows.changed  # closed: it collects nothing
    rows.close()  # idempotent


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.booleans()), max_size=30))
def test_a_take_names_exactly_the_ids_touched_since_the_last(
    touches: list[tuple[str, bool]],
) -> None:
    ts = _topic()
    rows = RowCursor(ts)
    rows.take()
    for seq, (eid, delete) in enumerate(touches, start=3):
        ts.store.apply(eid, "t.deleted" if delete else "t.updated", {"n": seq}, seq)
    reset, ids = rows.take()
    assert not reset and set(ids) == {eid for eid, _ in touches}
    assert {eid for eid in ids if rows.row(eid) is not None} <= set(rows.rows())
    rows.close()
