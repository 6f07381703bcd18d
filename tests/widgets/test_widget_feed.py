"""TableFeed and the freshness payloads, driven by hand: no server, no kernel, no clock."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.client.session import ConnectionState
from rtnb.client.topic_view import RowCursor, topic_view
from rtnb.core.ledger import MutationLedger, ResolutionCursor
from rtnb.core.pipeline import Pipeline
from rtnb.core.status import Status
from rtnb.core.store import PENDING_FIELD
from rtnb.widgets.budget import MessageBudget
from rtnb.widgets.feed import DEFAULT_KERNEL_KEEPALIVE, Feed, encode_buffer
from rtnb.widgets.rows import Action, TableFeed
from rtnb.widgets.status import connection_payload, topic_payload


class NoLoop:
    def call_soon_threadsafe(self, fn: Any) -> None: ...

    def call_later(self, delay: float, fn: Any) -> None: ...


def _state(status: Status = Status.SUBSCRIBED, **kw: Any) -> ConnectionState:
    fields: dict[str, Any] = {
        "previous": None, "reason": "test", "attempt": 0, "next_retry_at": None,
        "transport": "websocket", "since": 0.0,
    }  # fmt: skip
    fields.update(kw)
    return ConnectionState(status, **fields)


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], list[bytes]]] = []

    def __call__(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        self.sent.append((content, buffers))


def _feed(**kw: Any) -> tuple[TableFeed, Any, Sink, list[ConnectionState]]:
    ts = Pipeline().add_topic("t", "sequence")
    ts.store.replace([("a", {"x": 1}, 1), ("b", {"x": 2}, 2)])
    ts.status = "live"
    ts.last_event_at = 1000.0
    conn = [_state()]
    sink = Sink()
    feed = TableFeed(
        NoLoop(), sink, rows=RowCursor(ts), connection_state=lambda: conn[0],
        budget=MessageBudget(rate=1000, burst=1000), wall=lambda: 1000.5, **kw,
    )  # fmt: skip
    return feed, ts, sink, conn


def test_a_feed_sends_a_snapshot_then_only_changed_rows_with_increasing_seq() -> None:
    feed, ts, sink, _ = _feed()
    assert not feed.flush(0.0)  # not displayed: nothing
    feed.activate()
    assert feed.flush(0.0)
    ts.store.apply("b", "t.updated", {"x": 3}, 3)
    ts.store.apply("c", "t.updated", {"x": 4, "y": "new"}, 4)
    ts.store.apply("a", "t.deleted", {}, 5)
    assert feed.flush(0.2)
    assert not feed.flush(0.4)  # nothing changed
    (snap, _), (diff, _) = sink.sent
    assert (snap["t"], snap["seq"], diff["t"], diff["seq"]) == ("snapshot", 1, "diff", 2)
    assert snap["columns"] == ["x"] and diff["columns"] == ["x", "y"]
    assert diff["fresh"]["status"] == "live"


def test_a_feed_never_sends_more_than_fps_in_a_second() -> None:
    feed, ts, sink, _ = _feed(fps=5)
    feed.activate()
    t = 0.0
    for i in range(1000):  # a change every millisecond
        ts.store.apply("a", "t.updated", {"x": i}, 10 + i)
        feed.flush(t)
        t += 0.001
    assert len(sink.sent) == 5


def test_actions_are_flags_per_row() -> None:
    ack = Action("Ack", {"s": "ack"}, when={"x": 1})
    feed, _, sink, _ = _feed(actions=[ack, Action("Any", {"s": 1})])
    feed.activate()
    feed.flush(0.0)
    import msgspec

    rows = msgspec.json.decode(sink.sent[0][1][0])["u"]
    assert sorted(rows) == [["a", 0b110, 1], ["b", 0b100, 2]]


def test_stale_reconnecting_and_replaying_freshness() -> None:
    ts = Pipeline().add_topic("t", "sequence")
    ts.last_event_at = 100.0
    ts.status = "live"
    stale = topic_payload(
        topic_view(ts), _state(Status.RECONNECTING, attempt=4, next_retry_at=103.0), 100.5
    )
    assert (stale["status"], stale["attempt"], stale["retryIn"]) == ("stale", 4, 2.5)
    assert stale["age"] == 0.5 and stale["last"] == 100.0
    ts.status = "replaying"
    ts.replay_until = 1240
    assert topic_payload(topic_view(ts), _state(), 101.0)["status"] == "replaying"
    ts.status = "forbidden"
    assert (
        topic_payload(topic_view(ts), _state(Status.RECONNECTING), 101.0)["status"] == "forbidden"
    )
    fresh = Pipeline().add_topic("u", "sequence")
    assert topic_payload(topic_view(fresh), _state(Status.CONNECTING), 1.0)["status"] == "pending"
    assert topic_payload(topic_view(fresh), _state(Status.CLOSED), 1.0)["status"] == "closed"


def test_a_gap_is_reported_with_its_age() -> None:
    feed, ts, sink, _ = _feed()
    feed.activate()
    feed.flush(0.0)
    ts.unrecoverable = 12
    ts.gaps = 1
    assert feed.flush(0.2)  # the freshness changed: a message without rows
    fresh = sink.sent[-1][0]["fresh"]
    assert fresh["unrecoverable"] == 12 and fresh["gapAge"] == 0.0


def test_connection_freshness_is_the_worst_news_across_topics() -> None:
    p = Pipeline()
    a, b = p.add_topic("a", "sequence"), p.add_topic("b", "sequence")
    a.status, b.status = "live", "replaying"
    a.last_event_at, b.last_event_at = 10.0, 12.0
    out = connection_payload(_state(), [topic_view(a), topic_view(b)], 13.0)
    assert out["status"] == "replaying" and out["last"] == 12.0 and out["age"] == 1.0
    assert (
        connection_payload(_state(Status.RECONNECTING), [topic_view(a), topic_view(b)], 13.0)[
            "status"
        ]
        == "stale"
    )
    assert [t["name"] for t in out["topics"]] == ["a", "b"]


def test_rejections_are_read_from_the_ledger_once_each() -> None:
    ledger = MutationLedger()
    cursor = ResolutionCursor(ledger)
    ledger.create("m1", "t", "a", {"x": 9}, now=0.0)
    ledger.reject("m1", "invalid_patch", "no", now=0.1)
    ledger.create("m2", "t", "a", {"x": 8}, now=0.2)
    ledger.confirm("m2", now=0.3)
    assert [r.client_mutation_id for r in cursor.take()] == ["m1", "m2"]
    assert cursor.take() == []
    feed, ts, sink, _ = _feed(resolutions=ResolutionCursor(ledger).take)
    ledger.create("m3", "t", "a", {"x": 7}, now=1.0)
    ts.store.add_pending("a", "m3", {"x": 7})
    ledger.reject("m3", "invalid_patch", "x must be small", now=1.1)
    ts.store.remove_pending("a", "m3")
    feed.activate()
    feed.flush(0.0)
    assert sink.sent[0][0]["rejected"] == [
        {"id": "a", "status": "rejected", "code": "invalid_patch",
         "error": "x must be small", "patch": {"x": 7}}
    ]  # fmt: skip


@pytest.mark.slow
def test_a_feed_stops_when_its_widget_is_gone() -> None:
    class Widget:
        def __init__(self) -> None:
            self.sent = 0

        def send(self, content: dict[str, Any], buffers: list[bytes]) -> None:
            self.sent += 1

    ts = Pipeline().add_topic("t", "sequence")
    w = Widget()
    # Its own budget: the kernel-wide one has been spent by other tests' clocks.
    feed = TableFeed(
        NoLoop(),
        w.send,
        rows=RowCursor(ts),
        connection_state=_state,
        budget=MessageBudget(rate=1000, burst=1000),
    )
    feed.activate()
    assert feed.flush(0.0) and w.sent == 1
    del w
    gc.collect()
    assert not feed.flush(1.0) and feed.closed


def test_a_displayed_feed_speaks_at_least_once_per_keepalive_even_with_nothing_to_say() -> None:
    feed, _, sink, _ = _feed()
    assert feed.keepalive == DEFAULT_KERNEL_KEEPALIVE == 1.0
    assert not feed.flush(0.0)  # not displayed: not even a keep-alive
    feed.activate()
    assert feed.flush(0.0)  # the snapshot
    assert not feed.flush(0.5)  # nothing to say, and spoke 0.5 s ago
    assert feed.flush(1.0)  # a keep-alive
    assert not feed.flush(1.5)
    feed.ping()  # a browser tab woke up
    assert feed.flush(1.6)
    kinds = [(c["t"], c["seq"], c["ka"]) for c, _ in sink.sent]
    assert kinds == [("snapshot", 1, 1.0), ("alive", 2, 1.0), ("alive", 3, 1.0)]


def test_a_spent_message_budget_never_silences_the_keepalive() -> None:
    ts = Pipeline().add_topic("t", "sequence")
    ts.status = "live"
    sink = Sink()
    feed = TableFeed(
        NoLoop(), sink, rows=RowCursor(ts), connection_state=_state,
        budget=MessageBudget(rate=0.001, burst=1), wall=lambda: 1000.0,
    )  # fmt: skip
    feed.activate()
    assert feed.flush(0.0)  # the snapshot spends the budget
    for i in range(1, 30):
        ts.store.apply(f"e{i}", "t.updated", {"x": i}, i)  # always something to say
        feed.flush(i * 0.5)
    alive = [c["seq"] for c, _ in sink.sent if c["t"] == "alive"]
    assert len(alive) >= 13  # one a second over ~14.5 s, though no diff could go


def test_keepalive_must_be_positive() -> None:
    with pytest.raises(ValueError, match="kernel_keepalive must be seconds > 0"):
        Feed(NoLoop(), Sink(), keepalive=0)


def test_a_connection_with_a_quiet_topic_names_that_topics_silence() -> None:
    p = Pipeline()
    busy = p.add_topic("busy")
    quiet = p.add_topic("quiet", stale_after=5.0)
    for ts, last in ((busy, 999.0), (quiet, 990.0)):
        ts.status = "live"
        ts.last_event_at = last
    fresh = connection_payload(_state(), [topic_view(busy), topic_view(quiet)], 1000.0)
    assert fresh["status"] == "quiet"
    assert (fresh["staleAfter"], fresh["quietAge"]) == (5.0, 10.0)
    assert [t["status"] for t in fresh["topics"]] == ["live", "quiet"]
    assert topic_payload(topic_view(quiet), _state(), 1000.0)["staleAfter"] == 5.0


# -- bounded traffic (issue 17) ------------------------------------------------------------------


def _browser_rows(sent: list[Any]) -> dict[str, dict[str, Any]]:
    """The rows as the browser holds them (``densify`` of table_store.js, in Python)."""
    import msgspec

    rows: dict[str, dict[str, Any]] = {}
    columns: list[str] = []
    for content, buffers in sent:
        columns = content.get("columns", columns)
        data = msgspec.json.decode(buffers[0])
        if content["t"] == "snapshot":
            rows = {}
        for eid, _flags, *values in data["u"]:
            rows[eid] = {c: v for c, v in zip(columns, values, strict=False) if v is not None}
        for eid, _flags, *pairs in data.get("s", []):
            rows[eid] = {columns[i]: v for i, v in zip(pairs[::2], pairs[1::2], strict=True)}
        for eid in data["d"]:
            rows.pop(eid, None)
    return rows


def test_rows_with_few_of_many_fields_go_sparse_and_columns_are_capped_with_an_overflow() -> None:
    # 4,000 entities with one distinct field each: before issue 17 one 76 MiB message
    # (every row carried every column). Now: sparse rows, 200 columns, an overflow column.
    feed, ts, sink, _ = _feed(max_message_bytes=64 << 20)
    ts.store.replace([(f"e{i}", {"name": "x", f"f{i}": i}, i) for i in range(4_000)])
    feed.activate()
    assert feed.flush(0.0)
    content, buffers = sink.sent[-1]
    assert len(content["columns"]) == 201 and content["columns"][-1] == "_overflow"
    assert content["overflow"] == 4_000 - 199
    assert len(buffers[0]) < 400_000, len(buffers[0])  # O(fields), not O(entities x columns)
    rows = _browser_rows(sink.sent)
    assert rows["e0"] == {"name": "x", "f0": 0}
    assert rows["e3999"] == {"name": "x", "_overflow": {"f3999": 3999}}


def test_no_message_is_over_max_message_bytes_the_rest_follows_in_later_diffs() -> None:
    feed, ts, sink, _ = _feed(max_message_bytes=20_000)
    ts.store.replace([(f"e{i}", {"name": "y" * 100, "n": i}, i) for i in range(1_000)])
    feed.activate()
    ticks = 0
    while feed.flush(ticks * 0.2):
        ticks += 1
        assert ticks < 50
    assert ticks >= 5 and all(len(b[0]) <= 20_000 for _, b in sink.sent)
    assert sink.sent[0][0]["total"] == 1_000
    rows = _browser_rows(sink.sent)
    assert len(rows) == 1_000 and rows["e999"] == {"name": "y" * 100, "n": 999}


_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.text(max_size=8))
_views = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e", PENDING_FIELD]), _values, max_size=6
)


@settings(max_examples=200, deadline=None)
@given(
    views=st.lists(_views, max_size=40),
    deletes=st.lists(st.sampled_from(["x", "y"]), max_size=2),
    columns=st.one_of(st.none(), st.lists(st.sampled_from("abcde"), min_size=1, unique=True)),
    with_action=st.booleans(),
    max_columns=st.integers(1, 6),
    max_bytes=st.one_of(st.integers(1, 2_000), st.integers(-2, 2)),
)
def test_rows_encoded_at_once_are_the_bytes_of_the_row_by_row_path(
    views: list[dict[str, Any]],
    deletes: list[str],
    columns: list[str] | None,
    with_action: bool,
    max_columns: int,
    max_bytes: int,
) -> None:
    # Issue 22: a diff's rows are encoded in one call when they fit; the buffer, the
    # rows counted and the backlog must be what the row-by-row path gives. A small
    # max_bytes is a slack around the exact size of all rows (the boundary case).
    actions = [Action("Ack", {"a": 1}, when={"b": True})] if with_action else []
    out = []
    for encode in ("_encode_rows", "_encode_rows_bounded"):
        feed, _, _, _ = _feed(
            columns=columns, actions=actions, max_columns=max_columns, max_message_bytes=max_bytes
        )
        ids = [f"e{i}" for i in range(len(views))]
        feed._discover(views)
        if max_bytes <= 2:
            rows = [feed._row(e, v)[1] for e, v in zip(ids, views, strict=True)]
            exact = sum(len(encode_buffer(row)) + 1 for row in rows) - 1
            feed.max_message_bytes = max(1, exact + max_bytes)
        buffer, sent = getattr(feed, encode)(ids, views, deletes)
        out.append((buffer, sent, feed.rows_sent, list(feed._backlog)))
    assert out[0] == out[1]


# -- rows without garbage (issue 22, third pass) -------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from("pqrstuvw"), st.booleans(), _views),
        st.tuples(st.just("pending"), st.sampled_from("pqrs"), st.booleans(), _views),
        st.tuples(st.just("replace"), st.lists(st.sampled_from("pqrstuvw"), max_size=6), _views),
        st.tuples(st.just("nested"), st.sampled_from("pqr"), st.integers(0, 3)),
        st.just(("flush",)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=_ops,
    columns=st.one_of(st.none(), st.lists(st.sampled_from("abcde"), min_size=1, unique=True)),
    max_rows=st.one_of(st.none(), st.integers(1, 5)),
    with_action=st.booleans(),
    max_columns=st.integers(1, 6),
    max_bytes=st.one_of(st.just(1 << 20), st.integers(1, 300)),
)
def test_a_feed_sends_the_messages_of_the_reference_feed_byte_for_byte(
    ops: list[tuple[Any, ...]],
    columns: list[str] | None,
    max_rows: int | None,
    with_action: bool,
    max_columns: int,
    max_bytes: int,
) -> None:
    # Issue 22: rows are tuples and ids/views two lists (no garbage for the collector's
    # oldest generation); the old row building (lists, (id, view) pairs) is the oracle.
    from tests.widgets.table_feed_reference import ReferenceTableFeed

    ts = Pipeline().add_topic("t", "sequence")
    ts.status = "live"
    ts.last_event_at = 1000.0
    actions = [Action("Ack", {"a": 1}, when={"b": True})] if with_action else []
    sinks = []
    feeds = []
    for cls in (TableFeed, ReferenceTableFeed):
        sink = Sink()
        feed = cls(
            NoLoop(), sink, rows=RowCursor(ts), connection_state=_state, columns=columns,
            max_rows=max_rows, actions=actions, max_columns=max_columns,
            max_message_bytes=max_bytes, budget=MessageBudget(rate=1000, burst=1000),
            wall=lambda: 1000.5,
        )  # fmt: skip
        feed.activate()
        sinks.append(sink)
        feeds.append(feed)
    now = 0.0
    for seq, op in enumerate([*ops, ("flush",), ("flush",)], 1):
        kind = op[0]
        if kind == "apply":
            _, eid, delete, payload = op
            ts.store.apply(eid, "t.deleted" if delete else "t.updated", payload, seq)
        elif kind == "pending":
            _, eid, add, patch = op
            if add:
                ts.store.add_pending(eid, f"m{seq}", patch)
            else:
                for cmid in list(ts.store.pending.get(eid, {})):
                    ts.store.remove_pending(eid, cmid)
        elif kind == "replace":
            _, eids, state = op
            ts.store.replace([(eid, state, k) for k, eid in enumerate(eids)])
        elif kind == "nested":  # values that are containers (rows the collector tracks)
            _, eid, n = op
            ts.store.apply(eid, "t.updated", {"a": {"k": [n]}, "c": [n] * n}, seq)
        else:
            now += 0.25
            for feed in feeds:
                feed.flush(now)
    assert sinks[0].sent == sinks[1].sent
    assert feeds[0].rows_sent == feeds[1].rows_sent


def test_a_diffs_rows_leave_nothing_for_the_collectors_older_generations() -> None:
    # Issue 22: a tick's rows (and the ids and views they are built from) live until
    # they are encoded. As lists, and as (id, view) pairs, the collector kept every one
    # and promoted it: at 100k events/s on 10,000 entities each tick's ~6,000 rows led to
    # a full collection of the heap about every other tick (~2 µs per event in a kernel).
    # Tuples of strings and numbers are untracked at their first collection instead.
    from rtnb.widgets import rows as rows_module

    feed, ts, _, _ = _feed()
    n = 5_000
    ts.store.replace([(f"e{i}", {"x": i, "label": f"row {i}"}, i) for i in range(n)])
    feed.activate()
    feed.flush(0.0)
    for i in range(n):
        ts.store.apply(f"e{i}", "t.updated", {"x": -i}, n + i)
    survivors: list[int] = []
    encode = rows_module.encode_buffer

    def collect_then_encode(value: Any) -> bytes:
        if not survivors:  # the first encode: every row is built and alive
            gc.collect(0)  # what survives a young collection goes to the next generation
            survivors.append(len(gc.get_objects(generation=1)))
        return encode(value)

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # no automatic collection in between: only the one above
    try:
        rows_module.encode_buffer = collect_then_encode  # type: ignore[assignment]
        feed.flush(0.5)
    finally:
        rows_module.encode_buffer = encode  # type: ignore[assignment]
        if was_enabled:
            gc.enable()
    assert feed.rows_sent == 2 * n
    assert survivors and survivors[0] < n // 10, survivors


def test_rows_of_views_that_are_not_dicts_are_the_rows_of_the_same_dicts() -> None:
    from types import MappingProxyType

    feed, _, _, _ = _feed(columns=["x", "y"])
    ids = ["a", "b", "c"]
    views = [{"x": 1, "y": 2}, {"x": 3, "y": None, PENDING_FIELD: True}, {"y": 5, "x": 4}]
    proxies = [MappingProxyType(v) for v in views]
    assert feed._rows(ids, proxies) == feed._rows(ids, views)
    assert feed._rows(ids, views)[0] == [("a", 0, 1, 2), ("b", 1, 3, None), ("c", 0, 4, 5)]
