"""The catch-up (``catchup.py``) against a literal model, no sockets: whatever the
interleaving of publishes and drains, a client gets every event after its position
exactly once, in order, or is cut as a slow consumer — never a gap — and the queue
never holds more than its cap.

A live client whose queue would pass its cap is switched to the catch-up (issue 22):
it is cut only once retention passed its position, and a heartbeat it reads never
reports a sequence past the last event it got (no tail gap to resubscribe for)."""

from __future__ import annotations

import msgspec
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from rtnb.server.chaos import Chaos
from rtnb.server.hub import Hub
from rtnb.server.session import CLOSE_SLOW_CONSUMER, Session
from rtnb.server.storage import LogRecord, MemoryStorage
from rtnb.server.tokens import ReplayTokens
from rtnb.server.topiclog import TopicLog

CAP = 4000  # bytes; an event is ~130 bytes

ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 12)),
        st.tuples(st.just("drain"), st.integers(1, 40)),
    ),
    max_size=60,
)


def _publish(log: TopicLog, session: Session, n: int) -> None:
    """Append ``n`` events and fan them out to the subscribed session, as the hub does."""
    before = log.latest
    run = [log.append("x.set", {"i": before + i}, f"e{(before + i) % 5}")[0] for i in range(n)]
    session.push_run(run, sum(len(r.text) for r in run))


def _drain(session: Session, frames: int, got: list[int]) -> None:
    """The writer: come back for more (``wait`` tops up), take a batch, send it."""
    for _ in range(frames):
        if session.catchup and not session.closed:
            session.top_up()
        if not session.queue:
            return
        item = session.queue[0]
        session.take(1, CAP)
        if type(item) is LogRecord:
            got.append(item.sequence)


@settings(max_examples=300, deadline=None)
@given(
    backlog=st.integers(0, 200),
    retention=st.integers(60, 400),
    limit=st.sampled_from([1, 2, 3, 7, 10_000]),  # send_queue_limit, in frames
    script=ops,
)
def test_a_catch_up_delivers_every_event_once_in_order_or_cuts(backlog, retention, limit, script):
    log = TopicLog("acme", "t", MemoryStorage(), ReplayTokens(b"k" * 32), retention=retention)
    log.append("x.set", {"i": -1}, "e0")
    start, token = log.latest, log.token()
    for i in range(backlog):
        log.append("x.set", {"i": i}, f"e{i % 5}")
    status, records, _ = log.replay(token)
    assume(status == "complete")  # else a snapshot, not a catch-up
    session = Session("ws", limit, Chaos(), CAP)
    session.subscriptions["t"] = log  # as the hub's ``watch`` does
    session.catch_up(log, records, fetched=False)
    got: list[int] = []
    for op, n in script:
        if op == "publish":
            _publish(log, session, n)
        else:
            _drain(session, n, got)
        assert session.queued_bytes <= CAP
        assert len(session.queue) <= limit
    _drain(session, 1_000_000, got)
    assert got == list(range(start + 1, start + 1 + len(got))), "a gap or a duplicate"
    if session.killed:  # live events over the cap fall behind: only retention cuts
        assert session.close_code == CLOSE_SLOW_CONSUMER
        assert "retention" in session.close_reason, session.close_reason
    else:
        assert got[-1:] == [log.latest] or (not got and log.latest == start)
        assert not session.catchup


live_ops = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 50)),  # up to ~1.6 caps in one run
        st.tuples(st.just("publish"), st.integers(1, 8)),
        st.tuples(st.just("drain"), st.integers(1, 20)),
        st.tuples(st.just("heartbeat"), st.just(0)),
    ),
    max_size=80,
)


def _drain_checked(session: Session, frames: int, got: list[int], start: int) -> None:
    """:func:`_drain`, reading heartbeats too: each reports the last event already got."""
    for _ in range(frames):
        if session.catchup and not session.closed:
            session.top_up()
        if not session.queue:
            return
        item = session.queue[0]
        session.take(1, CAP)
        if type(item) is LogRecord:
            got.append(item.sequence)
        elif type(item) is str:
            sequences = msgspec.json.decode(item)["sequences"]
            assert sequences["t"] == (got[-1] if got else start), "a heartbeat ahead: a tail gap"


@settings(max_examples=300, deadline=None)
@given(
    backlog=st.integers(0, 100),
    retention=st.integers(30, 400),
    limit=st.sampled_from([1, 2, 3, 7, 10_000]),
    script=live_ops,
)
def test_a_live_client_over_its_cap_catches_up_and_is_cut_only_past_retention(
    backlog, retention, limit, script
):
    log = TopicLog("acme", "t", MemoryStorage(), ReplayTokens(b"k" * 32), retention=retention)
    log.append("x.set", {"i": -1}, "e0")
    start, token = log.latest, log.token()
    for i in range(backlog):
        log.append("x.set", {"i": i}, f"e{i % 5}")
    status, records, _ = log.replay(token)
    assume(status == "complete")
    session = Session("ws", limit, Chaos(), CAP)
    session.subscriptions["t"] = log
    behind: list[str] = []
    session.on_behind = lambda: behind.append("t")
    session.catch_up(log, records, fetched=False)  # backlog 0: live at once
    got: list[int] = []
    for op, n in script:
        if op == "publish":
            _publish(log, session, n)
        elif op == "drain":
            _drain_checked(session, n, got, start)
        elif (
            not session.closed
            and sum(type(item) is str for item in session.queue) < 3
            and len(session.queue) < limit
        ):  # a heartbeat every interval, as the hub pushes it; a few at most queued
            session.push(Hub.heartbeat({"t": log}, session))
        assert session.queued_bytes <= CAP, "the queue passed its byte cap"
        assert len(session.queue) <= limit, "the queue passed its frame cap"
        if session.killed:
            assert "retention" in session.close_reason, session.close_reason
            assert log.first() > (got[-1] if got else start) + 1, "cut, yet the log had it"
            break
    _drain_checked(session, 1_000_000, got, start)
    assert got == list(range(start + 1, start + 1 + len(got))), "a gap or a duplicate"
    event("cut past retention" if session.killed else f"served; fell behind: {bool(behind)}")
    if not session.killed:
        assert got[-1:] == [log.latest] or (not got and log.latest == start)
        assert not session.catchup
