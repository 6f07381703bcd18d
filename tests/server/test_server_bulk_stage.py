"""``publish_many``'s bulk path (issue 22) sends the same bytes as staging event by event.

The reference is the per-event path as it was before the bulk one: a JSON round trip
of each payload (its copy), then ``TopicLog.stage`` (``Event`` struct, ``encode_str``,
the entity state encoded for the snapshot-size check). The bulk path prepares the batch
in the publisher thread (``bulk.prepare``) and splices frame text in
``TopicLog.stage_many``; on random batches both must give the same frames, tokens,
sequences, states and refusals (too-large frames and entities, at the same event, with
the same message) — the entity-size check there only runs when a bound says it could be
over, so these batches are built to grow entities up to a small frame limit.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.server import topiclog
from rtnb.server.bulk import prepare as _prepare
from rtnb.server.chaos import Chaos
from rtnb.server.session import Session
from rtnb.server.staged import events_of
from rtnb.server.storage import LogRecord, MemoryStorage
from rtnb.server.tokens import ReplayTokens
from rtnb.server.topiclog import TooLarge, TopicLog

TOPIC = "bulk.t"
TENANT = "acme"
AT = datetime(2026, 12, 6, 3, 4, 5, 678901, tzinfo=UTC)
EPOCH = b"\x01\x02\x03\x04\x05\x06\x07\x08"

names = st.sampled_from(["e1", "e2", 'q"uote', "é ü", "tab\there", "x" * 40, "\u2028"])
types = st.sampled_from(["x.updated", "x.deleted", 'we"ird', "ünï.set"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=8), values, max_size=6) | st.dictionaries(
    st.integers(0, 3) | st.sampled_from(["0", "1", "clientMutationId"]), values, max_size=4
)  # int keys that collide with string ones: the copy differs from the first encoding
events = st.tuples(types, names, payloads)
batches = st.lists(st.lists(events, max_size=25), min_size=1, max_size=4)


class _CopyingStorage(MemoryStorage):
    """The memory store as it was: each append copies the entity's state (the reference)."""

    shares_entities = False


def _log(max_frame_size: int, reference: bool = False) -> TopicLog:
    storage = _CopyingStorage() if reference else MemoryStorage()
    storage.reset((TENANT, TOPIC), EPOCH)
    tokens = ReplayTokens(hmac.digest(b"k", b"rtnb replay tokens v1", hashlib.sha256))
    return TopicLog(TENANT, TOPIC, storage, tokens, retention=50, max_frame_size=max_frame_size)


def _per_event(
    log: TopicLog, batch: list[tuple[str, str, dict[Any, Any]]]
) -> tuple[list[Any], str]:
    """The old path: copy each payload by a JSON round trip, ``stage`` it, stop at a refusal."""
    out = []
    for event_type, entity_id, payload in batch:
        copy = msgspec.json.decode(msgspec.json.encode(dict(payload)))
        try:
            out.append(log.stage(event_type, copy, entity_id, occurred_at=AT))
        except TooLarge as exc:
            return out, str(exc)
    return out, ""


def _state(log: TopicLog) -> tuple[Any, ...]:
    records = log.read(0)
    return (
        log.latest,
        list(log.entities.items()),  # the order too: snapshots list entities in it
        list(log.entity_sequence.items()),
        [(r.sequence, r.token, r.text) for r in records],
        log.snapshot_texts(),
        list(log._storage.entities(log.key).items()),  # what a new log would start from
        log._staged,
        log._staged_seq,
    )


@settings(max_examples=150, deadline=None)
@given(batches=batches, limit=st.sampled_from([600, 900, 1_500, 1024 * 1024]))
def test_bulk_staging_sends_the_same_bytes_as_staging_each_event(
    batches: list[list[tuple[str, str, dict[Any, Any]]]], limit: int
) -> None:
    old, new = _log(limit, reference=True), _log(limit)
    for batch in batches:
        want, refused = _per_event(old, batch)
        prepared, keys = _prepare(TOPIC, TENANT, batch)
        assert keys is None
        got, error = new.stage_many(prepared, AT)
        assert [s.record.text for s in got] == [s.record.text for s in want]
        assert [s.record.token for s in got] == [s.record.token for s in want]
        assert [s.record.sequence for s in got] == [s.record.sequence for s in want]
        assert [s.state for s in got] == [s.state for s in want]
        assert events_of(list(got)) == [s.event for s in want]  # none built yet
        assert [s.event for s in got] == [s.event for s in want]
        assert events_of(list(got)) == [s.event for s in want]
        assert (str(error) if error else "") == refused
        for staged in want:
            old.commit(staged)
        new.commit_many(got)
        assert _state(new) == _state(old)


def test_an_entity_grown_by_small_payloads_is_refused_exactly_at_the_limit() -> None:
    """The bound is only a shortcut: the event that makes the state too large is refused."""
    limit = 2_000
    old, new = _log(limit, reference=True), _log(limit)
    batch = [("x.updated", "e", {f"k{i}": "v" * 20}) for i in range(200)]
    want, refused = _per_event(old, batch)
    got, error = new.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)
    assert refused and str(error) == refused
    assert "would grow to" in refused
    assert len(got) == len(want) < len(batch)
    # The last state accepted fits; one more key would not.
    fits = new._entity_overhead + len(b'"e"') + len(msgspec.json.encode(got[-1].state))
    assert fits <= limit


growing = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["x.updated"] * 9 + ["x.deleted"]),
            st.sampled_from(["a", "b"]),
            st.dictionaries(
                st.sampled_from([f"k{i}" for i in range(60)] + ["clientMutationId"]),
                st.text(min_size=4, max_size=30),
                min_size=1,
                max_size=3,
            ),
        ),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    batches=growing,
    limit=st.sampled_from([500, 700, 1_000]),
    every=st.integers(1, 3),
    measure=st.sampled_from([1, 1_000]),
)
def test_entities_grown_batch_after_batch_are_refused_where_staging_each_event_refuses(
    batches: list[list[tuple[str, str, dict[str, Any]]]], limit: int, every: int, measure: int
) -> None:
    """Small batches go column by column while a ceiling over every state says no entity can
    reach the limit; the event that makes a state too large is refused all the same."""
    saved, topiclog._MEASURE_EVERY = topiclog._MEASURE_EVERY, measure
    try:
        _grow(batches, limit, every)
    finally:
        topiclog._MEASURE_EVERY = saved


def _grow(batches: list[list[tuple[str, str, dict[str, Any]]]], limit: int, every: int) -> None:
    old, new = _log(limit, reference=True), _log(limit)
    old_staged: list[Any] = []
    new_staged: list[Any] = []
    for i, batch in enumerate(batches):
        want, refused = _per_event(old, batch)
        got, error = new.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)
        assert [s.record.text for s in got] == [s.record.text for s in want]
        assert [s.state for s in got] == [s.state for s in want]
        assert (str(error) if error else "") == refused
        old_staged += want
        new_staged += got
        if i % every == 0:  # sometimes several batches are staged before a commit
            for staged in old_staged:
                old.commit(staged)
            new.commit_many(new_staged)
            old_staged, new_staged = [], []
    for staged in old_staged:
        old.commit(staged)
    new.commit_many(new_staged)
    assert _state(new)[:5] == _state(old)[:5]


def test_the_bound_starts_from_a_measured_state_for_entities_staged_the_old_way() -> None:
    """``stage`` and ``stage_many`` on one log: each leaves a bound the other can trust."""
    limit = 1_500
    old, new = _log(limit, reference=True), _log(limit)
    for log in (old, new):
        log.commit(log.stage("x.updated", {"big": "b" * 1_000}, "e", occurred_at=AT))
    batch = [("x.updated", "e", {f"k{i}": "v" * 30}) for i in range(40)]
    want, refused = _per_event(old, batch)
    got, error = new.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)
    assert str(error) == refused != ""
    assert [s.record.text for s in got] == [s.record.text for s in want]


def test_a_frame_too_large_is_refused_before_anything_of_it_is_staged() -> None:
    log = _log(1_000)
    batch = [("x.updated", "a", {"v": 1}), ("x.updated", "b", {"v": "z" * 2_000})]
    got, error = log.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)
    assert len(got) == 1 and error is not None and "event frame would be" in str(error)
    assert log.current("b") is None and log.current("a") == {"v": 1}


def test_publish_many_with_keys_digests_the_copy() -> None:
    from rtnb.server.idempotency import digest

    _, keys = _prepare(TOPIC, TENANT, [("t", "e", {"a": 1}, "k1"), ("t", "e", {"a": 2})])
    assert keys is not None and keys[1] is None
    assert keys[0] is not None and keys[0].id == (TENANT, TOPIC, "k1")
    batch = [("t", "é", {"b": [1, {"z": 1, "a": 2}], "a": 1.5}, "k1"), ("u", "e", {1: 2}, "k2")]
    prepared, keys = _prepare(TOPIC, TENANT, batch)
    assert keys is not None
    assert [k.digest for k in keys if k is not None] == [
        digest(TOPIC, t, e, c, 1)
        for t, e, c in zip(prepared.types, prepared.ids, prepared.payloads, strict=True)
    ]
    # The definition stored by SQLite and Redis: blake2b-128 of the sorted JSON of the copy.
    assert (
        keys[1] is not None
        and keys[1].digest
        == hashlib.blake2b(b'["bulk.t","u","e",{"1":2},1]', digest_size=16).digest()
    )


@settings(max_examples=150, deadline=None)
@given(
    batch=st.lists(st.tuples(types, names, payloads, st.none() | st.text(min_size=1)), min_size=1)
)
def test_keys_of_a_batch_digest_each_event_as_publishing_it_alone_would(
    batch: list[tuple[str, str, dict[Any, Any], str | None]],
) -> None:
    """The batch's digests are cut from one sorted encode of it: each is the definition's."""
    from rtnb.server.idempotency import digest

    prepared, keys = _prepare(TOPIC, TENANT, batch)
    if all(p is None for *_, p in batch):
        assert keys is None
        return
    assert keys is not None
    for key, (_, _, _, publish_id), t, e, c in zip(
        keys, batch, prepared.types, prepared.ids, prepared.payloads, strict=True
    ):
        if publish_id is None:
            assert key is None
        else:
            assert key is not None
            assert (key.name, key.id, key.scope) == (
                publish_id,
                (TENANT, TOPIC, publish_id),
                (TENANT, TOPIC),
            )
            assert key.digest == digest(TOPIC, t, e, c, 1)


@pytest.mark.parametrize("bad", [("", "e", {}), ("t", 5, {}), ("t", "e", {"x": object()})])
def test_prepare_refuses_what_publish_refused(bad: tuple[Any, ...]) -> None:
    with pytest.raises((ValueError, TypeError)):
        _prepare(TOPIC, TENANT, [("t", "e", {}), bad])


def _records(sizes: list[int]) -> list[LogRecord]:
    return [LogRecord(TOPIC, EPOCH, i, "tok", "x" * n) for i, n in enumerate(sizes, 1)]


@settings(max_examples=300, deadline=None)
@given(
    queued=st.lists(st.integers(1, 50), max_size=6),
    run=st.lists(st.integers(1, 50), max_size=8),
    limit=st.integers(1, 10),
    max_bytes=st.none() | st.integers(1, 300),
)
def test_a_pushed_run_ends_like_pushing_each_record(
    queued: list[int], run: list[int], limit: int, max_bytes: int | None
) -> None:
    """Same queue, same byte count, cut (or not) with the same reason as ``push`` each."""
    one, bulk = (Session("ws", limit, Chaos(), max_bytes) for _ in range(2))
    before = _records(queued)
    for session in (one, bulk):
        for record in before:
            session.push(record)
    records = _records(run)
    for record in records:
        one.push(record)
    bulk.push_run(records, sum(len(r.text) for r in records))
    assert list(bulk.queue) == list(one.queue)
    assert bulk.queued_bytes == one.queued_bytes
    assert (bulk.killed, bulk.close_code, bulk.close_reason) == (
        one.killed,
        one.close_code,
        one.close_reason,
    )


def test_tokens_minted_in_a_range_are_the_tokens_minted_one_by_one() -> None:
    tokens = ReplayTokens(b"s" * 32)
    minter = tokens.minter(TENANT, TOPIC, EPOCH)
    assert minter.mint_range(1, 0) == []
    many = minter.mint_range(2**31, 37)
    assert many == [minter.mint(2**31 + i) for i in range(37)]
    assert all(tokens.parse(TENANT, TOPIC, t) == (EPOCH, 2**31 + i) for i, t in enumerate(many))


@settings(max_examples=200, deadline=None)
@given(
    rounds=st.lists(st.lists(st.sampled_from("abcdefgh"), unique=True), max_size=6),
    max_bytes=st.integers(0, 8_000),
)
def test_remembering_a_round_of_keys_keeps_what_remembering_each_keeps(
    rounds: list[list[str]], max_bytes: int
) -> None:
    """A commit round never holds one key twice (the second answers the first)."""
    from rtnb.server.idempotency import Remembered

    one, bulk, columns = (
        Remembered(max_bytes=max_bytes, window=60, clock=lambda: 1000.0) for _ in "abc"
    )
    for r, names in enumerate(rounds):
        entries = [
            ((TENANT, TOPIC * (i % 2 + 1), n), b"d" * 16, EPOCH, i, AT, "t" * (i % 4 + r + 1))
            for i, n in enumerate(names)
        ]
        for entry in entries:
            one.add(*entry, 1000.0)
        bulk.add_many(entries, 1000.0)
        if entries:  # column by column: one log's keys (its epoch) in a commit round
            keys, digests, _, sequences, occurred, types = map(list, zip(*entries, strict=True))
            columns.add_columns(keys, digests, EPOCH, sequences, occurred, types, 1000.0)
        for other in (bulk, columns):
            assert list(other._entries.items()) == list(one._entries.items())
            assert (other.bytes, other.forgotten, other._puts) == (
                one.bytes,
                one.forgotten,
                one._puts,
            )


def test_publish_many_keeps_the_per_event_rules_for_keys_and_refusals(make_server: Any) -> None:
    """In one batch: a key twice answers its first event; a conflict or a too-large event
    publishes the events before it and none after; the refused event's key stays free."""
    srv = make_server(max_frame_size=4_096)
    events = srv.publish_many(
        TOPIC,
        [("o.set", "a", {"v": 1}, "k1"), ("o.set", "b", {"v": 2}), ("o.set", "a", {"v": 1}, "k1")],
        tenant=TENANT,
    )
    assert events[2] == events[0] and [e.sequence for e in events[:2]] == [1, 2]
    assert len({e.occurred_at for e in events}) == 1  # one clock read per call
    assert srv.latest_sequence(TOPIC, tenant=TENANT) == 2

    with pytest.raises(ValueError, match="already used for a different publish"):
        srv.publish_many(
            TOPIC,
            [("o.set", "c", {"v": 3}, "k3"), ("o.set", "a", {"v": 9}, "k1"), ("o.set", "d", {})],
            tenant=TENANT,
        )
    assert srv.latest_sequence(TOPIC, tenant=TENANT) == 3  # c published, d not

    with pytest.raises(ValueError, match=r"event #2 refused: .*the 2 event\(s\) before it"):
        srv.publish_many(
            TOPIC,
            [
                ("o.set", "e", {"v": 5}, "k5"),
                ("o.set", "c", {"v": 3}, "k3"),  # answered: the original, nothing stored
                ("o.set", "f", {"v": "x" * 5_000}, "k6"),
                ("o.set", "g", {"v": 7}),
            ],
            tenant=TENANT,
        )
    assert srv.latest_sequence(TOPIC, tenant=TENANT) == 4
    retried = srv.publish_many(TOPIC, [("o.set", "f", {"v": 6}, "k6")], tenant=TENANT)
    assert retried[0].sequence == 5  # k6 was never stored: new content is no conflict
    assert srv.truth(TOPIC, tenant=TENANT) == {
        "a": {"v": 1},
        "b": {"v": 2},
        "c": {"v": 3},
        "e": {"v": 5},
        "f": {"v": 6},
    }


@settings(max_examples=100, deadline=None)
@given(batches=batches, commit_after=st.lists(st.booleans(), min_size=4, max_size=4))
def test_runs_committed_while_later_ones_are_staged_end_as_committing_each_event(
    batches: list[list[tuple[str, str, dict[Any, Any]]]], commit_after: list[bool]
) -> None:
    """``commit_many`` in C only when its run ends at the last staged event; otherwise (a
    later batch already staged, a delete in the run) event by event — the same end."""
    old, new = _log(1024 * 1024, reference=True), _log(1024 * 1024)
    pending_old: list[Any] = []
    pending_new: list[Any] = []
    for batch, commit in zip(batches, commit_after, strict=False):
        pending_old.append(_per_event(old, batch)[0])
        pending_new.append(new.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)[0])
        assert _state(new) == _state(old)  # the store's entities include what is staged
        if commit:  # commit the oldest staged batch only: later ones stay staged
            for staged in pending_old.pop(0):
                old.commit(staged)
            new.commit_many(pending_new.pop(0))
            assert _state(new) == _state(old)
    for run_old, run_new in zip(pending_old, pending_new, strict=True):
        for staged in run_old:
            old.commit(staged)
        new.commit_many(run_new)
        assert _state(new) == _state(old)


def test_prepare_remembers_valid_names_only_and_forgets_them_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name cache gives the encodings a fresh encode gives, and never skips a check."""
    from rtnb.server import bulk

    monkeypatch.setattr(bulk, "_MAX_NAMES", 5)
    monkeypatch.setattr(bulk, "_MAX_NAME_CHARS", 40)
    monkeypatch.setattr(bulk, "_name_json", {})
    monkeypatch.setattr(bulk, "_name_bytes", {})
    monkeypatch.setattr(bulk, "_name_chars", [0])
    long_ids = [("t", "L" * 30 + str(i), {}) for i in range(3)]
    for i in range(3):  # each 31 characters: at most one stays cached
        got = _prepare(TOPIC, TENANT, long_ids[i : i + 1])[0]
        assert got.id_json == [f'"{long_ids[i][1]}"']
        assert sum(map(len, bulk._name_json)) <= 40 + 31
    for round_ in range(3):
        batch = [("t", f'é{i}"{round_}', {"v": i}) for i in range(4)] + [("t", "x", {})]
        got = _prepare(TOPIC, TENANT, batch)[0]
        assert got.id_json == [msgspec.json.encode(e).decode() for _, e, _ in batch]
        assert got.id_bytes == [len(msgspec.json.encode(e)) for _, e, _ in batch]
        assert got.type_json == ['"t"'] * 5
        assert len(bulk._name_json) <= 5 + len(batch)
    for bad in ("", "x" * 1025):
        with pytest.raises(ValueError):
            _prepare(TOPIC, TENANT, [("t", "x", {}), ("t", bad, {})])
        assert bad not in bulk._name_json

    class Name(str):
        pass

    with pytest.raises(ValueError):  # a str subclass: refused as before, cached or not
        _prepare(TOPIC, TENANT, [("t", Name("x"), {})])


def _take_each(session: Session, max_messages: int, max_bytes: int) -> list[str]:
    """``Session.take`` as it was: one queued frame at a time (the reference)."""
    queue = session.queue
    out: list[str] = []
    size = 0
    while queue and len(out) < max_messages:
        item = queue[0]
        text = item if type(item) is str else item.text  # type: ignore[union-attr]
        nbytes = len(text.encode())
        if out and size + nbytes > max_bytes:
            break
        queue.popleft()
        out.append(text)
        size += nbytes
    session.queued_bytes -= size
    return out


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.tuples(st.booleans(), st.text(min_size=1, max_size=40)), min_size=1, max_size=30
    ),
    max_messages=st.integers(1, 40),
    max_bytes=st.integers(1, 400),
)
def test_taking_a_backlog_of_records_takes_what_taking_each_frame_takes(
    frames: list[tuple[bool, str]], max_messages: int, max_bytes: int
) -> None:
    """Batches of records (ASCII or not) sized in C: the same frames, bytes and queue."""
    one, bulk = (Session("ws", 10_000, Chaos(), None) for _ in range(2))
    for i, (is_record, text) in enumerate(frames, 1):
        for session in (one, bulk):
            session.push(LogRecord(TOPIC, EPOCH, i, "tok", text) if is_record else text)
    while one.queue:
        assert bulk.take(max_messages, max_bytes) == _take_each(one, max_messages, max_bytes)
        assert list(map(_frame, bulk.queue)) == list(map(_frame, one.queue))
        assert bulk.queued_bytes == one.queued_bytes
    assert not bulk.queue and bulk.queued_bytes == 0


def _frame(item: Any) -> tuple[type, str]:
    return type(item), item if type(item) is str else item.text


def test_a_log_that_gives_up_its_staged_events_leaves_the_store_what_was_appended() -> None:
    """``abandon`` (the store failed): a shared store copies the entities as appended."""
    old, new = _log(1024 * 1024, reference=True), _log(1024 * 1024)
    batch = [("x.updated", "a", {"v": 1}), ("x.deleted", "b", {}), ("x.updated", "c", {})]
    for log in (old, new):
        log.commit(log.stage("x.updated", {"v": 0}, "b", occurred_at=AT))
    _per_event(old, batch)
    new.stage_many(_prepare(TOPIC, TENANT, batch)[0], AT)
    for log in (old, new):
        log.abandon()
    assert (
        list(new._storage.entities(new.key).items())
        == list(old._storage.entities(old.key).items())
        == [("a", ({"v": 1}, 2)), ("c", ({}, 4))]
    )
    reopened = TopicLog(TENANT, TOPIC, new._storage, new._tokens, retention=50)
    assert reopened.entities == {"a": {"v": 1}, "c": {}} and reopened.latest == 4
