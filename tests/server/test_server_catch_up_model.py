"""The catch-up (``catchup.py``) against a literal model, no sockets: whatever the
interleaving of publishes and drains, a client gets every event after its position
exactly once, in order, or is cut as a slow consumer — never a gap — and the queue
never holds more than its cap."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rtnb.server.chaos import Chaos
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
    for i in range(n):
        log.append("x.set", {"i": before + i}, f"e{(before + i) % 5}")
    run = log.read(before)
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
    if session.killed:
        assert session.close_code == CLOSE_SLOW_CONSUMER
    else:
        assert got[-1:] == [log.latest] or (not got and log.latest == start)
        assert not session.catchup
