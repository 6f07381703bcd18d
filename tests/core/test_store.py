"""TopicStore: shallow merge, deletes, snapshots, optimistic overlay, change cursors."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from rtnb.core.merge import apply_to, shallow_merge
from rtnb.core.store import PENDING_FIELD, TopicStore


def test_patches_merge_shallowly_and_deleted_removes() -> None:
    s = TopicStore("t")
    s.apply("a", "x.created", {"status": "open", "sev": 1}, 1)
    s.apply("a", "x.updated", {"status": "ack"}, 2)
    assert s.entities["a"] == {"status": "ack", "sev": 1}
    assert s.sequences["a"] == 2
    s.apply("a", "x.deleted", {}, 3)
    assert "a" not in s.entities and "a" not in s.sequences


def test_client_mutation_id_is_routing_not_state() -> None:
    s = TopicStore("t")
    s.apply("a", "x.updated", {"status": "ack", "clientMutationId": "m1"}, 1)
    assert s.entities["a"] == {"status": "ack"}


def test_applying_never_mutates_a_dict_a_reader_holds() -> None:
    s = TopicStore("t")
    s.apply("a", "x", {"v": 1}, 1)
    held = s.entities["a"]
    s.apply("a", "x", {"v": 2}, 2)
    assert held == {"v": 1} and s.entities["a"] == {"v": 2}


def test_snapshot_replaces_everything() -> None:
    s = TopicStore("t")
    s.apply("a", "x", {"v": 1}, 1)
    s.replace([("b", {"v": 2}, 7)])
    assert s.entities == {"b": {"v": 2}} and s.sequences == {"b": 7}


def test_view_overlays_pending_patches_and_flags_them() -> None:
    s = TopicStore("t")
    s.apply("a", "x", {"status": "open", "sev": 2}, 1)
    s.add_pending("a", "m1", {"status": "ack"})
    assert s.view("a") == {"status": "ack", "sev": 2, PENDING_FIELD: True}
    assert s.entities["a"]["status"] == "open"  # server state untouched
    assert s.views()["a"][PENDING_FIELD] is True
    assert s.remove_pending("a", "m1")
    assert s.view("a") == {"status": "open", "sev": 2}
    assert not s.remove_pending("a", "m1")


def test_pending_patches_apply_in_creation_order_over_new_server_state() -> None:
    s = TopicStore("t")
    s.add_pending("new", "m1", {"v": 1})
    s.add_pending("new", "m2", {"v": 2})
    assert s.view("new") == {"v": 2, PENDING_FIELD: True}
    s.apply("new", "x", {"w": 0}, 1)
    assert s.view("new") == {"v": 2, "w": 0, PENDING_FIELD: True}


def test_change_cursors_collect_ids_until_taken() -> None:
    s = TopicStore("t")
    c1, c2 = s.open_changes(), s.open_changes()
    assert c1.take() == (True, set())  # a new cursor starts with a full read
    s.apply("a", "x", {}, 1)
    s.apply("b", "x", {}, 2)
    s.add_pending("c", "m", {})
    assert c1.take() == (False, {"a", "b", "c"})
    assert c1.take() == (False, set())
    s.replace([])
    assert c2.take() == (True, set())
    s.close_changes(c2)
    s.apply("z", "x", {}, 3)
    assert c2.take() == (False, set())


def test_a_custom_merge_function_is_used() -> None:
    def keep_max(state: Any, etype: str, payload: Any) -> dict[str, Any]:
        cur = dict(state or {})
        cur["v"] = max(cur.get("v", 0), payload["v"])
        return cur

    s = TopicStore("t", merge=keep_max)
    s.apply("a", "x", {"v": 5}, 1)
    s.apply("a", "x", {"v": 3}, 2)
    assert s.entities["a"] == {"v": 5}


_key = st.sampled_from(["a", "b", "c", "clientMutationId"])
_events = st.lists(
    st.tuples(
        st.sampled_from(["e1", "e2", "e3"]),
        st.sampled_from(["x.updated", "x.deleted"]),
        st.dictionaries(_key, st.integers(), max_size=3),
    ),
    max_size=40,
)


@given(_events)
def test_store_agrees_with_the_shared_merge_rules(
    events: list[tuple[str, str, dict[str, int]]],
) -> None:
    s = TopicStore("t")
    truth: dict[str, dict[str, Any]] = {}
    for i, (eid, etype, payload) in enumerate(events):
        s.apply(eid, etype, payload, i)
        apply_to(truth, eid, etype, payload, shallow_merge)
    assert s.entities == truth


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["x.updated", "x.deleted"]),
            st.dictionaries(st.sampled_from(["k", "v", "w"]), st.text(max_size=40)),
        ),
        max_size=60,
    )
)
def test_nbytes_is_an_upper_bound_of_the_state_json_size(
    events: list[tuple[str, str, dict[str, Any]]],
) -> None:
    import msgspec

    s = TopicStore("t", max_bytes=1 << 30)
    for i, (eid, kind, payload) in enumerate(events):
        s.apply(eid, kind, payload, i)
        assert s.nbytes >= len(msgspec.json.encode(s.entities))
    assert s.measure() == len(msgspec.json.encode(s.entities)) == s.nbytes


def test_a_state_far_below_the_cap_is_measured_once_per_cap_received_not_per_doubling() -> None:
    # issue 22: a 10,000-entity topic in steady state was re-encoded whole each time
    # the bound doubled (~1 µs per event); now a measure is due only when the bound
    # passes the cap, i.e. once per (cap - state) bytes received.
    class Counting(TopicStore):
        calls = 0

        def measure(self) -> int:
            Counting.calls += 1
            return super().measure()

    cap = 1_000_000
    s = Counting("t", max_bytes=cap)
    received = 0
    for i in range(100_000):  # 2,000 entities overwritten: ~75 KB of state, ~3.7 MB received
        payload = {"v": i, "name": "abcdefgh"}
        received += len(msgspec.json.encode(payload)) + 8
        s.apply(f"e{i % 2000}", "x.updated", payload, i)
    state = len(msgspec.json.encode(s.entities))
    assert state < cap // 10 and s.over is False
    # once per (cap - state) received, at most; the old doubling rule measured 50 times
    assert 1 <= Counting.calls <= received // (cap - state) + 1 <= 8
    assert s.nbytes >= state
