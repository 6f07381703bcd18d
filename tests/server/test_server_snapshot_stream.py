"""A topic larger than the send queue can be subscribed while it is live (issue 16, item 5).

An 18 MB topic with 100 events/s, the default 8 MiB send queue: the snapshot is
streamed in parts, the next part made once the previous one left the queue
(``rtnb/server/snapshots.py``), so the real client gets the whole snapshot over
WebSocket and SSE and goes live — never cut as a slow consumer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rtnb
from rtnb.server import ServerHandle
from rtnb.server.snapshots import SnapshotStream
from rtnb.server.storage import MemoryStorage
from rtnb.server.tokens import ReplayTokens
from rtnb.server.topiclog import SNAPSHOT_CHUNK_BYTES, TopicLog
from tests.server.conftest import wait_until

ENTITIES = 4600
BLOB = "x" * 4000  # 4,600 entities of ~4 KB: an 18 MB snapshot


@pytest.fixture(scope="module")
def big() -> Iterator[ServerHandle]:
    with rtnb.serve() as srv:
        assert srv.config.send_queue_bytes < 18_000_000
        srv.publish_many(
            "big",
            [("x.set", f"e{i}", {"blob": BLOB, "n": 0}) for i in range(ENTITIES)],
            tenant="acme",
        )
        yield srv


class Producer:
    """Publishes to the big topic at about 100 events/s until stopped."""

    def __init__(self, srv: ServerHandle) -> None:
        self.srv = srv
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.01):  # the pace of the producer, not a wait for a condition
            self.sent += 1
            entity = f"e{self.sent % ENTITIES}"
            self.srv.publish("big", "x.set", {"n": self.sent}, tenant="acme", entity_id=entity)

    def __enter__(self) -> Producer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["websocket", "sse", "polling"])
def test_an_18_mb_live_topic_is_subscribed_whole_by_a_client_that_keeps_up(big, transport):
    token = big.issue_token(tenant="acme", user=f"reader-{transport}")
    cut_before = big.stats()["slow_consumers"]
    conn = rtnb.connect(big.url, token=token, transport=transport, shared=False)
    try:
        with Producer(big) as producer:
            topic = conn.subscribe("big")
            wait_until(
                lambda: len(topic) == ENTITIES and topic.status == "live",
                timeout=120,
                what=f"the 18 MB snapshot over {transport}, then live",
            )
            wait_until(lambda: producer.sent >= 100, timeout=30, what="live events meanwhile")
        truth = big.truth("big", tenant="acme")
        wait_until(lambda: topic.entities == truth, timeout=30, what="the client to catch up")
        assert big.stats()["slow_consumers"] == cut_before, "cut as a slow consumer"
    finally:
        conn.close()


def _log(entities: int, size: int) -> TopicLog:
    log = TopicLog("acme", "t", MemoryStorage(), ReplayTokens(b"k" * 32), retention=1000)
    for i in range(entities):
        log.append("x.set", {"blob": "y" * size}, f"e{i}")
    return log


def test_a_stream_makes_parts_under_the_chunk_size_sharing_token_and_sequence_as_of_its_start():
    topic_log = _log(300, 3000)
    stream = SnapshotStream(topic_log)
    first_size = stream.size
    assert first_size > SNAPSHOT_CHUNK_BYTES // 2  # the first part is made at once
    for i in range(300):  # events after the stream began are not in it
        topic_log.append("x.set", {"late": True}, f"e{i}")
    topic_log.append("x.set", {"new": True}, "e-new")
    parts = [json.loads(t) for t in stream.texts()]
    assert len(parts) >= 4 and stream.done and stream.size == 0
    assert all(len(json.dumps(p)) <= SNAPSHOT_CHUNK_BYTES for p in parts)
    assert [p["more"] for p in parts] == [True] * (len(parts) - 1) + [False]
    assert {p["sequence"] for p in parts} == {300}
    assert len({p["token"] for p in parts}) == 1
    entities = [e for p in parts for e in p["entities"]]
    assert [e["entityId"] for e in entities] == [f"e{i}" for i in range(300)]
    assert all("late" not in e["state"] and e["sequence"] == i + 1 for i, e in enumerate(entities))


def test_a_snapshot_that_fits_one_part_is_one_frame_and_an_empty_topic_too():
    assert [json.loads(t)["entities"] for t in SnapshotStream(_log(0, 0)).texts()] == [[]]
    (only,) = SnapshotStream(_log(3, 10)).texts()
    assert json.loads(only)["more"] is False and len(json.loads(only)["entities"]) == 3


def test_a_session_counts_what_a_stream_holds_and_releases_it_part_by_part():
    from rtnb.server.chaos import Chaos
    from rtnb.server.session import Session

    session = Session("ws", 1000, Chaos(None), 8 * 1024 * 1024)  # type: ignore[arg-type]
    stream = SnapshotStream(_log(300, 3000))
    session.push(stream)
    assert session.queued_bytes == stream.size > SNAPSHOT_CHUNK_BYTES // 2
    session.push("tail")
    texts = []
    while session.queue:
        texts.extend(session.take(500, 256 * 1024))
        assert session.queued_bytes >= 0
    assert texts[-1] == "tail" and session.queued_bytes == 0
    assert len(texts) >= 5  # the parts, each taken alone, then the tail


@settings(max_examples=60, deadline=None)
@given(
    states=st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
        max_size=60,
    ),
    max_bytes=st.integers(600, 3000),
    later=st.integers(0, 20),
)
def test_a_stream_is_the_snapshot_as_of_its_start_split_by_encoded_bytes(states, max_bytes, later):
    topic_log = TopicLog("acme", "t", MemoryStorage(), ReplayTokens(b"k" * 32), retention=100)
    for i, value in enumerate(states):
        topic_log.append("x.set", {"v": value}, f"e{i}")
    expected = topic_log.snapshot_texts(max_bytes)
    stream = SnapshotStream(topic_log, max_bytes)
    for i in range(later):  # committed after the stream began: not in it
        topic_log.append("x.set", {"v": "late"}, f"e{i}")
    assert stream.texts() == expected
    assert stream.done and stream.size == 0
