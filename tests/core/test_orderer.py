"""Ordering policies: sequence (buffer gaps, report them), entity (latest wins), none."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.core.orderer import EntityOrderer, NoOrderer, SequenceOrderer, make_orderer
from rtnb.core.status import Outcome
from tests.helpers import event


def test_in_order_events_are_applied() -> None:
    o = SequenceOrderer("t")
    assert [o.offer(event(s, topic="t"), 0.0) for s in (1, 2, 3)] == [Outcome.APPLIED] * 3
    assert o.position() == 3


def test_an_early_event_is_buffered_and_drained_when_the_gap_fills() -> None:
    o = SequenceOrderer("t")
    assert o.offer(event(1, topic="t"), 0.0) is Outcome.APPLIED
    assert o.offer(event(3, topic="t"), 0.0) is Outcome.BUFFERED
    assert o.offer(event(4, topic="t"), 0.0) is Outcome.BUFFERED
    assert o.offer(event(3, topic="t"), 0.0) is Outcome.DUPLICATE
    assert o.offer(event(2, topic="t"), 0.0) is Outcome.APPLIED
    assert [e.sequence for e in o.drain()] == [3, 4]
    assert o.position() == 4 and o.buffered == 0


def test_an_event_behind_the_position_is_stale() -> None:
    o = SequenceOrderer("t")
    o.offer(event(5, topic="t"), 0.0)
    assert o.offer(event(4, topic="t"), 0.0) is Outcome.STALE


def test_a_gap_is_reported_after_gap_timeout_and_not_again_until_another_passes() -> None:
    o = SequenceOrderer("t", gap_timeout=1.0)
    o.offer(event(1, topic="t"), 0.0)
    o.offer(event(4, topic="t"), 10.0)
    assert o.check(10.5) is None
    rep = o.check(11.0)
    assert rep is not None and (rep.first, rep.last, rep.size) == (2, 3, 2)
    assert "gap open for 1.0 s" in rep.reason
    assert o.check(11.5) is None
    assert o.check(12.0) is not None


def test_a_full_buffer_is_reported_at_once_and_emptied() -> None:
    o = SequenceOrderer("t", max_buffer=3)
    o.offer(event(1, topic="t"), 0.0)
    for s in (3, 4, 5):
        o.offer(event(s, topic="t"), 0.0)
    rep = o.check(0.0)
    assert rep is not None and "buffer limit 3" in rep.reason
    assert o.buffered == 0


def test_a_heartbeat_ahead_of_the_position_is_a_tail_gap() -> None:
    o = SequenceOrderer("t", gap_timeout=1.0)
    o.offer(event(1, topic="t"), 0.0)
    o.note_latest(3, 5.0)
    assert o.check(5.5) is None
    rep = o.check(6.0)
    assert rep is not None and (rep.first, rep.last) == (2, 3)
    o.offer(event(2, topic="t"), 6.1)
    o.offer(event(3, topic="t"), 6.2)
    assert o.check(100.0) is None


def test_a_heartbeat_that_is_not_ahead_opens_no_gap() -> None:
    o = SequenceOrderer("t")
    o.offer(event(1, topic="t"), 0.0)
    o.note_latest(1, 0.0)
    assert o.check(100.0) is None


def test_reset_after_a_snapshot_restarts_from_its_sequence() -> None:
    o = SequenceOrderer("t")
    o.offer(event(1, topic="t"), 0.0)
    for s in (4, 6, 7):
        o.offer(event(s, topic="t"), 0.0)
    ready = o.reset(5, {})
    assert [e.sequence for e in ready] == [6, 7]
    assert o.position() == 7 and o.check(100.0) is None


def test_entity_mode_applies_only_newer_sequences_per_entity() -> None:
    o = EntityOrderer("t")
    assert o.offer(event(5, topic="t", entity="a"), 0.0) is Outcome.APPLIED
    assert o.offer(event(3, topic="t", entity="a"), 0.0) is Outcome.STALE
    assert o.offer(event(5, topic="t", entity="a"), 0.0) is Outcome.DUPLICATE
    assert o.offer(event(3, topic="t", entity="b"), 0.0) is Outcome.APPLIED
    o.reset(10, {"a": 10})
    assert o.offer(event(9, topic="t", entity="a"), 0.0) is Outcome.STALE


def test_none_mode_applies_everything_in_arrival_order() -> None:
    o = NoOrderer("t")
    assert {o.offer(event(s, topic="t"), 0.0) for s in (3, 1, 2)} == {Outcome.APPLIED}


def test_unknown_mode_and_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ordering must be"):
        make_orderer("t", "chronological")
    with pytest.raises(ValueError, match="gap_timeout"):
        SequenceOrderer("t", gap_timeout=0)
    with pytest.raises(ValueError, match="max_buffer"):
        SequenceOrderer("t", max_buffer=0)


@given(st.permutations(list(range(1, 30))))
def test_any_permutation_is_applied_exactly_once_in_order(order: list[int]) -> None:
    o = SequenceOrderer("t", max_buffer=100)
    o.offer(event(0, topic="t"), 0.0)
    applied: list[int] = []
    for s in order:
        if o.offer(event(s, topic="t"), 0.0) is Outcome.APPLIED:
            applied.append(s)
            applied.extend(e.sequence for e in o.drain())
    assert applied == list(range(1, 30))


@given(
    st.integers(min_value=1, max_value=20),
    st.lists(st.integers(min_value=0, max_value=200), max_size=300),
    st.sets(st.integers(min_value=0, max_value=299)),
)
def test_the_gap_buffer_never_holds_more_than_max_buffer(
    cap: int, seqs: list[int], checks: set[int]
) -> None:
    """Between two checks any number of events may arrive: the buffer stays within
    its cap, and a check after an overflow reports the gap at once."""
    o = SequenceOrderer("t", max_buffer=cap, gap_timeout=1e9)
    o.offer(event(0, topic="t"), 0.0)
    overflowed = False
    for i, s in enumerate(seqs):
        if o.offer(event(s, topic="t"), 0.0) is Outcome.APPLIED:
            o.drain()
        assert o.buffered <= cap
        overflowed = overflowed or o._overflow
        if i in checks:
            rep = o.check(0.0)
            if overflowed:
                assert rep is not None and "buffer limit" in rep.reason
                assert o.buffered == 0
            overflowed = o._overflow


def test_the_gap_buffer_is_capped_in_bytes_too() -> None:
    from rtnb.core.orderer import SequenceOrderer

    o = SequenceOrderer("t", max_buffer=10_000, max_buffer_bytes=20_000)
    o.reset(0, {})
    big = {"pad": "x" * 5_000}
    outcomes = [o.offer(event(seq, topic="t", payload=big), 0.0) for seq in range(2, 12)]
    assert all(out == "buffered" for out in outcomes)
    assert o.buffered == 3  # three events of ~5 KB fit 20,000 bytes; the rest are not kept
    rep = o.check(0.0)
    assert rep is not None and "of 20,000 bytes held" in rep.reason and o.buffered == 0
    o.offer(event(1, topic="t"), 0.0)
    assert o.drain() == []
