"""Log storage, topic logs and replay tokens, without a network."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.server.storage import LogRecord, MemoryStorage, SQLiteStorage
from rtnb.server.tokens import ReplayTokens, join_cursor
from rtnb.server.topiclog import TopicLog

KEY = ("acme", "t")
EPOCH = b"\x01" * 8


def _record(seq: int) -> LogRecord:
    return LogRecord("t", EPOCH, seq, f"tok{seq}", f'{{"seq":{seq}}}')


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path):
    store = MemoryStorage() if request.param == "memory" else SQLiteStorage(tmp_path)
    yield store
    store.close()


def test_a_stream_appends_reads_ranges_and_trims(storage):
    storage.reset(KEY, EPOCH)
    for seq in range(1, 11):
        storage.append(KEY, _record(seq), f"e{seq % 3}", {"v": seq})
    assert storage.bounds(KEY) == (1, 10)
    assert [r.sequence for r in storage.read(KEY, 6)] == [7, 8, 9, 10]
    assert [r.sequence for r in storage.read(KEY, 2, limit=3)] == [3, 4, 5]
    assert storage.read(KEY, 10) == []
    storage.trim(KEY, 4)
    assert storage.bounds(KEY) == (7, 10)
    assert [r.sequence for r in storage.read(KEY, 0)] == [7, 8, 9, 10]
    assert storage.entities(KEY)["e1"] == ({"v": 10}, 10)


def test_appending_out_of_sequence_is_refused(storage):
    storage.reset(KEY, EPOCH)
    with pytest.raises(ValueError, match="sequence 2 after 0"):
        storage.append(KEY, _record(2), "e", {})


def test_sqlite_storage_survives_reopening_with_epoch_records_and_entities(tmp_path):
    store = SQLiteStorage(tmp_path)
    store.reset(KEY, EPOCH)
    for seq in range(1, 8):
        store.append(KEY, _record(seq), f"e{seq % 2}", None if seq == 7 else {"v": seq})
    store.trim(KEY, 5)
    store.close()
    again = SQLiteStorage(tmp_path)
    assert again.epoch(KEY) == EPOCH
    assert again.bounds(KEY) == (3, 7)
    replayed = [(r.sequence, r.token) for r in again.read(KEY, 4)]
    assert replayed == [(5, "tok5"), (6, "tok6"), (7, "tok7")]
    assert again.entities(KEY) == {"e0": ({"v": 6}, 6)}
    again.close()


def test_an_empty_trimmed_stream_reports_bounds_after_its_latest(storage):
    storage.reset(KEY, EPOCH)
    assert storage.bounds(KEY) == (1, 0)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 60), retention=st.integers(1, 20), after=st.integers(0, 70))
def test_a_topic_log_replays_exactly_or_says_unavailable(n, retention, after):
    tokens = ReplayTokens(b"r" * 32)
    log = TopicLog("acme", "t", MemoryStorage(), tokens, retention=retention)
    for i in range(n):
        log.append("x.set", {"i": i}, f"e{i % 4}")
    token = log.token(after)
    status, records, why = log.replay(token)
    first = max(1, n - retention + 1)
    if after > n or after < first - 1:
        assert status == "unavailable" and why and not records
    else:
        assert status == "complete"
        assert [r.sequence for r in records] == list(range(after + 1, n + 1))


def test_tokens_are_bound_to_tenant_and_topic_and_tamper_evident():
    tokens = ReplayTokens(b"r" * 32)
    token = tokens.token("acme", "t", EPOCH, 42)
    assert tokens.parse("acme", "t", token) == (EPOCH, 42)
    assert tokens.parse("globex", "t", token) is None
    assert tokens.parse("acme", "u", token) is None
    assert ReplayTokens(b"s" * 32).parse("acme", "t", token) is None
    for i in range(len(token)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert tokens.parse("acme", "t", flipped) in (None, (EPOCH, 42)) and (
            tokens.parse("acme", "t", flipped) is None or flipped == token
        )


def test_a_cursor_is_the_topics_tokens_and_each_is_found_by_its_topic():
    tokens = ReplayTokens(b"r" * 32)
    a = tokens.token("acme", "a", EPOCH, 1)
    b = tokens.token("acme", "b", EPOCH, 2)
    cursor = join_cursor([a, b])
    assert tokens.split_cursor(cursor, ["a", "b", "c"]) == {"a": a, "b": b}
    assert tokens.split_cursor("garbage", ["a"]) == {}
    assert tokens.split_cursor("x" * 20_000, ["a"]) == {}
