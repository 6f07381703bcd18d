"""Deduper: O(1) per event, bounded by count and age, survives reconnects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtnb.core.dedupe import DEFAULT_DEDUPE_MAX_AGE, DEFAULT_DEDUPE_MAX_ENTRIES, Deduper


def test_an_added_id_is_seen_and_others_are_not() -> None:
    d = Deduper()
    d.add("a", 0.0)
    assert d.seen("a") and "a" in d
    assert not d.seen("b")


def test_oldest_ids_are_evicted_first_when_over_the_count_bound() -> None:
    d = Deduper(max_entries=3)
    for i, e in enumerate("abcd"):
        d.add(e, float(i))
    assert [x in d for x in "abcd"] == [False, True, True, True]
    assert d.evicted == 1


def test_ids_older_than_max_age_are_forgotten() -> None:
    d = Deduper(max_age=10.0)
    d.add("old", 0.0)
    d.add("mid", 5.0)
    d.add("new", 10.5)
    assert "old" not in d
    assert "mid" in d and "new" in d
    d.add("later", 15.0)
    assert "mid" not in d


def test_re_adding_an_id_does_not_grow_memory() -> None:
    d = Deduper(max_entries=10)
    for _ in range(100):
        d.add("same", 1.0)
    assert len(d) == 1


def test_forget_and_clear_drop_ids() -> None:
    d = Deduper()
    for e in "abc":
        d.add(e, 1.0)
    d.forget("b")
    assert "b" not in d and "a" in d and "c" in d
    d.forget("missing")
    d.clear()
    assert len(d) == 0


@pytest.mark.parametrize(
    ("kw", "msg"), [({"max_entries": 0}, "max_entries"), ({"max_age": 0}, "max_age")]
)
def test_bad_bounds_are_refused_with_a_clear_error(kw: dict[str, float], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        Deduper(**kw)  # type: ignore[arg-type]


def test_defaults_are_the_named_constants() -> None:
    assert Deduper().max_entries == DEFAULT_DEDUPE_MAX_ENTRIES
    assert Deduper().max_age == DEFAULT_DEDUPE_MAX_AGE


@given(
    cap=st.integers(1, 20),
    max_age=st.floats(0.5, 50),
    ops=st.lists(st.tuples(st.integers(0, 40), st.floats(0, 5)), max_size=300),
)
def test_memory_never_exceeds_its_bounds(
    cap: int, max_age: float, ops: list[tuple[int, float]]
) -> None:
    d = Deduper(max_entries=cap, max_age=max_age)
    now = 0.0
    last_added: dict[str, float] = {}
    for key, dt in ops:
        now += dt
        eid = f"e{key}"
        is_new = eid not in d
        d.add(eid, now)
        last_added.setdefault(eid, now)
        assert len(d) <= cap
        assert len(d._seen) == len(d.fifo)
        assert eid in d
        if is_new:
            # Adding a new id evicts everything that has reached max_age.
            assert all(now - t < max_age for t in d._seen.values())
    # What is remembered is a subset of what was added.
    assert set(d._seen) <= set(last_added)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.floats(0, 5)), max_size=200),
    st.integers(0, 200),
    st.lists(st.tuples(st.integers(0, 40), st.floats(0, 5)), max_size=50),
)
def test_a_memory_restored_from_its_newest_ids_behaves_as_the_original(
    adds: list[tuple[int, float]], cut: int, later: list[tuple[int, float]]
) -> None:
    original = Deduper(max_entries=16, max_age=20.0)
    now = 0.0
    for k, dt in adds[:cut]:
        now += dt
        original.add(f"e{k}", now)
    assert original.added == len(original) + original.evicted
    ids, times = original.newest(len(original))
    assert len(ids) == len(original) and all(x in original for x in ids)
    assert original.newest(3) == (ids[-3:], times[-3:])
    copy = Deduper.restored(ids, times, max_entries=16, max_age=20.0, evicted=original.evicted)
    for k, dt in later:
        now += dt
        original.add(f"e{k}", now)
        copy.add(f"e{k}", now)
        assert original.newest(16) == copy.newest(16) and original.evicted == copy.evicted


def test_a_restored_memory_refuses_inconsistent_ids() -> None:
    with pytest.raises(ValueError, match="2 ids but 1 times"):
        Deduper.restored(["a", "b"], [0.0])
    with pytest.raises(ValueError, match="distinct"):
        Deduper.restored(["a", "a"], [0.0, 1.0])
    with pytest.raises(ValueError, match="over max_entries=1"):
        Deduper.restored(["a", "b"], [0.0, 1.0], max_entries=1)
