"""One client on any transport: identity, subscriptions and a bounded send queue.

Producers (publishing, subscribing, heartbeats) only ever *push* onto the
queue, synchronously, on the event loop; one writer task per connection drains
it. This keeps fan-out non-blocking (a slow client never delays a publisher or
another client) and makes batching free: when the writer finds more than one
frame waiting — a replay, a burst — it sends them as one ``batch`` frame, and
when the client keeps up each frame goes out alone, as soon as it is pushed.

The queue is bounded in frames (``send_queue_limit``) and in bytes
(``send_queue_bytes``, 8 MiB), counting everything: live events, snapshots and
replays alike. Live events fill at most three quarters of either cap: a topic's
run of events that would take the queue past that is not queued, and the topic
*falls behind* — it switches to the catch-up path below at the last event of it
already queued, exactly like a replay. The last quarter is room for the frames
that are not log events (acks, heartbeats, snapshot parts, errors): if those
pass a cap, the consumer is disconnected with close code 1013 ("try again
later", RFC 6455 §7.4.1 / IANA registry) and reason ``slow consumer``, so one
stuck client can never make the server's memory grow without bound. One frame
(or a subscription's ``subscribed`` and snapshot) pushed onto an *empty* queue is
always accepted, however large.

A snapshot is queued as one :class:`~rtnb.server.snapshots.SnapshotStream`,
which counts what it holds (its first part and its view of the topic) and makes
the next part only once the previous one has left the queue (``snapshots.py``).
So a snapshot bigger than the limit reaches a client that keeps up while the
topic stays live, and what one connection holds stays about ``send_queue_bytes``.

A replay is streamed the same way (``catchup.py``): the queue is topped up from the
topic's log, to half the limits once below a quarter, as the writer comes back for more, and the
topic's live events are not queued until the replay has reached the log's end. So a
client behind by more than the queue catches up as fast as it reads, instead of being
cut at every reconnect; one that does not read is cut once retention passes it. A live
client that falls behind in a burst catches up the same way, on the same connection:
the wire does not change (the same events, in order, once), and heartbeats report the
last event queued for the topic, so the client sees no missing tail.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import operator
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from .catchup import Catchup
from .snapshots import SnapshotStream
from .storage import LogRecord

if TYPE_CHECKING:
    from .auth import Identity
    from .chaos import Chaos
    from .topiclog import TopicLog

#: RFC 6455 / IANA "Try Again Later": the client should reconnect (and replay).
CLOSE_SLOW_CONSUMER: Final = 1013


class Marked:
    """A frame that moves a topic's position (a snapshot): SSE gives it an ``id:``."""

    __slots__ = ("op", "text", "token", "topic")

    def __init__(self, op: str, topic: str, token: str, text: str) -> None:
        self.op = op
        self.topic = topic
        self.token = token
        self.text = text


Item = str | LogRecord | Marked | SnapshotStream
_RECORDS: Final = {LogRecord}
_TEXT: Final = operator.attrgetter("text")
_ids = itertools.count(1)


def _size(item: Item) -> int:
    """The bytes a queued frame takes on the wire (UTF-8; ``isascii`` is O(1) in CPython).

    A snapshot stream counts what it holds: its view and its part made but not sent.
    """
    if type(item) is SnapshotStream:
        return item.size
    return _text_bytes(item if type(item) is str else item.text)  # type: ignore[union-attr]


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def batch_text(texts: list[str]) -> str:
    """A ``batch`` frame built from already-encoded frames, without re-encoding them."""
    return '{"op":"batch","messages":[' + ",".join(texts) + "]}"


class Session:
    """State of one connection. All methods run on the server's event loop."""

    __slots__ = (
        "_wakeup",
        "catchup",
        "chaos",
        "close_code",
        "close_reason",
        "closed",
        "disconnected",
        "event_bytes",
        "event_limit",
        "held",
        "id",
        "identity",
        "killed",
        "kind",
        "limit",
        "max_bytes",
        "on_behind",
        "on_kill",
        "on_slow",
        "queue",
        "queued_bytes",
        "subscriptions",
    )

    def __init__(self, kind: str, limit: int, chaos: Chaos, max_bytes: int | None = None) -> None:
        self.id = next(_ids)
        self.kind = kind
        self.limit = limit
        self.max_bytes = max_bytes
        # Live events fill at most three quarters of each cap (see the module docstring).
        self.event_limit = limit - limit // 4
        self.event_bytes = None if max_bytes is None else max_bytes - max_bytes // 4
        self.queued_bytes = 0  # UTF-8 bytes of the queued frames' texts
        self.chaos = chaos
        self.identity: Identity | None = None
        self.subscriptions: dict[str, TopicLog] = {}
        self.queue: collections.deque[Item] = collections.deque()
        self._wakeup = asyncio.Event()
        self.closed = False  # no more frames will be accepted
        self.killed = False  # close now, without draining the queue
        self.disconnected = False  # the peer is gone: nothing can be sent
        self.close_code = 1000
        self.close_reason = ""
        self.held: list[tuple[int, LogRecord]] = []  # chaos reorder hold-back
        self.on_kill: asyncio.Event | None = None
        self.on_slow: Callable[[], None] | None = None  # called once, when cut as slow
        self.on_behind: Callable[[], None] | None = None  # called when a topic falls behind
        self.catchup: dict[str, Catchup] = {}  # topics being replayed from the log

    def __repr__(self) -> str:
        who = f"{self.identity.tenant}/{self.identity.user}" if self.identity else "anonymous"
        return (
            f"<Session {self.id} {self.kind} {who} queued={len(self.queue)}"
            f" bytes={self.queued_bytes}>"
        )

    # -- producing -----------------------------------------------------------

    def push(self, item: Item) -> None:
        """Queue one frame (encoded text, or a log record) for sending."""
        if self.closed:
            return
        if self.chaos.cut_until and self.chaos.is_cut():
            self.chaos.count("stalled_frames")
            return
        queue = self.queue
        if type(item) is LogRecord:  # a live event: within the events' share, or behind
            if self.catchup and item.topic in self.catchup:
                self._behind(item.topic)
                return
            size = _text_bytes(item.text)
            if queue and (
                len(queue) >= self.event_limit
                or (self.event_bytes is not None and self.queued_bytes + size > self.event_bytes)
            ):
                self._fall_behind(item)
                return
            queue.append(item)
            self.queued_bytes += size
            self._wakeup.set()
            return
        was_empty = not queue
        queue.append(item)
        self.queued_bytes += _size(item)
        if not self._within_limits(was_empty):
            return
        self._wakeup.set()

    def push_many(self, items: Sequence[Item]) -> None:
        """Queue a replay or snapshot run, under the same limits as :meth:`push`."""
        if self.closed or not items:
            return
        was_empty = not self.queue
        self.queue.extend(items)
        self.queued_bytes += sum(map(_size, items))
        if not self._within_limits(was_empty):
            return
        self._wakeup.set()

    def push_run(self, records: Sequence[LogRecord], nbytes: int) -> None:
        """:meth:`push` of a run of one topic's records, in order, in one step (``nbytes``:
        their UTF-8 bytes).

        A run that would take the queue past three quarters of a cap is queued as far as
        it fits, and the topic falls behind at the first record that does not: the rest
        is read from the log as the queue drains (:meth:`_fall_behind`). A run of one
        record onto an empty queue is always accepted, as :meth:`push` accepts it.
        """
        if self.closed or not records:
            return
        if self.chaos.cut_until and self.chaos.is_cut():
            self.chaos.count("stalled_frames", len(records))
            return
        if self.catchup and records[0].topic in self.catchup:
            self._behind(records[0].topic)
            return
        queue = self.queue
        count = len(queue) + len(records)
        if (
            count > self.event_limit
            or (self.event_bytes is not None and self.queued_bytes + nbytes > self.event_bytes)
        ) and (queue or len(records) > 1):
            self._fall_behind_in(records)
            return
        queue.extend(records)
        self.queued_bytes += nbytes
        self._wakeup.set()

    def _within_limits(self, was_empty: bool) -> bool:
        """Cut the consumer if the queue is over a limit (see the module docstring)."""
        if len(self.queue) > self.limit and not was_empty:
            what = f"more than {self.limit:,} frames"
        elif self.max_bytes is not None and self.queued_bytes > self.max_bytes and not was_empty:
            what = f"more than {self.max_bytes:,} bytes"
        else:
            return True
        self._cut(f"{what} waiting to be sent")
        return False

    def _cut(self, what: str) -> None:
        self.kill(CLOSE_SLOW_CONSUMER, f"slow consumer: {what}")
        if self.on_slow is not None:
            self.on_slow()

    # -- catching up (catchup.py) --------------------------------------------

    def catch_up(self, log: TopicLog, records: list[LogRecord], *, fetched: bool) -> None:
        """Queue the replay ``records`` of ``log``'s topic as the client reads them.

        What fits in half the queue's limits is queued now (a short replay: all of it,
        as before); the rest, and what is committed meanwhile, is read from the log by
        :meth:`wait`. ``fetched``: the records were read from a sequenced store, not
        the in-memory log, so they are kept until sent.
        """
        self.catchup.pop(log.topic, None)
        if self.closed or not records:
            return
        catchup = Catchup(log, records[0].sequence - 1, records)
        self.catchup[log.topic] = catchup
        self._top_up(log.topic, catchup)
        if not fetched:  # the rest is read from the log when due: nothing pinned here
            catchup.pending = []

    def stop_catch_up(self, topic: str) -> None:
        self.catchup.pop(topic, None)

    def position(self, topic: str) -> tuple[str, int] | None:
        """The token and sequence of the last event of ``topic`` queued, while catching up."""
        catchup = self.catchup.get(topic)
        return None if catchup is None else (catchup.token, catchup.sequence)

    def _room(self) -> tuple[int, int]:
        """Frames and bytes a catch-up may add now: up to half of each limit."""
        frames = self.limit // 2 - len(self.queue)
        cap = self.max_bytes if self.max_bytes is not None else 1 << 62
        return max(1, frames), max(1, cap // 2 - self.queued_bytes)

    def _top_up(self, topic: str, catchup: Catchup) -> None:
        frames, nbytes = self._room()
        try:
            records, size = catchup.take(frames, nbytes)
        except LookupError:
            self._lost()
            return
        if records:
            self.queue.extend(records)
            self.queued_bytes += size
            self._wakeup.set()
        if catchup.caught_up:  # the topic goes live in this very step: no gap
            del self.catchup[topic]

    def top_up(self) -> None:
        """Queue the next part of the replays still catching up, up to half the limits,
        once the queue is below a quarter of them.

        Called by :meth:`wait`, i.e. each time the writer comes back for more.
        """
        # Only once below a quarter, then up to half: a read from the log costs a walk
        # to the position, so it is done for many events at a time.
        if not self._below_a_quarter():
            return
        for topic, catchup in list(self.catchup.items()):
            if self.closed:
                return
            self._top_up(topic, catchup)

    def _below_a_quarter(self) -> bool:
        """The queue is empty, or below a quarter of both limits: time to top it up."""
        quarter = (self.max_bytes if self.max_bytes is not None else 1 << 62) // 4
        queue = self.queue
        return not queue or (self.queued_bytes < quarter and len(queue) < self.limit // 4)

    def _fall_behind_in(self, records: Sequence[LogRecord]) -> None:
        """Queue what of a live run fits in the events' share of the caps, in order; its
        topic falls behind at the first record that does not fit."""
        frames = max(0, self.event_limit - len(self.queue))
        head = list(records[:frames]) if frames < len(records) else list(records)
        texts = list(map(_TEXT, head))
        sizes = map(len, texts) if all(map(str.isascii, texts)) else map(_text_bytes, texts)
        ends = list(itertools.accumulate(sizes))
        room = 1 << 62 if self.event_bytes is None else self.event_bytes - self.queued_bytes
        k = bisect.bisect_right(ends, room)
        if k:
            self.queue.extend(head if k == len(head) else head[:k])
            self.queued_bytes += ends[k - 1]
            self._wakeup.set()
        if k < len(records):  # always, as the caller found the run does not fit whole
            self._fall_behind(records[k])

    def _fall_behind(self, record: LogRecord) -> None:
        """A live ``record`` that would take the queue past its share of the caps: its
        topic catches up from the log from there, as a replay does.

        Every earlier event of the topic was queued (it was live), so the position is
        the event before ``record``: nothing queued is dropped and nothing is skipped.
        Topped up at once if the queue is below a quarter (the writer may be waiting on
        an empty queue), else when the writer comes back for more. A record its topic's
        log does not hold (a subscription replaced meanwhile) cuts the consumer, as
        over a cap before.
        """
        log = self.subscriptions.get(record.topic)
        if log is None or log.latest < record.sequence or log.epoch != record.epoch:
            self._cut("more than its share of the send queue waiting to be sent")
            return
        after = record.sequence - 1
        catchup = Catchup(log, after, [])
        catchup.token = log.token(after)  # what a heartbeat reports until more is queued
        self.catchup[record.topic] = catchup
        if self.on_behind is not None:
            self.on_behind()
        if catchup.lost:
            self._lost()
            return
        if self._below_a_quarter():
            self._top_up(record.topic, catchup)

    def _behind(self, topic: str) -> None:
        """A live event of a topic still catching up: it is in the log, read later."""
        if self.catchup[topic].lost:
            self._lost()

    def _lost(self) -> None:
        # No topic name: a WebSocket close reason is at most 123 bytes (RFC 6455 §5.5).
        self._cut("further behind than the topic's retention")

    # -- closing -------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (e.g. an ``error``) have been sent."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        self._wakeup.set()

    def kill(self, code: int, reason: str) -> None:
        """Close now and drop whatever is queued (slow consumers, restarts)."""
        self.close(code, reason)
        self.killed = True
        self.clear()
        self.held.clear()
        self.catchup.clear()
        self._wakeup.set()
        if self.on_kill is not None:
            self.on_kill.set()

    # -- consuming -----------------------------------------------------------

    def clear(self) -> None:
        """Drop everything queued."""
        self.queue.clear()
        self.queued_bytes = 0

    def popleft(self) -> Item:
        """Take the oldest queued frame."""
        item = self.queue.popleft()
        self.queued_bytes -= _size(item)
        return item

    async def wait(self) -> None:
        """Wait until there is something to send or the session closed.

        A replay being caught up tops the queue up here: as fast as the writer sends.
        """
        if self.catchup and not self.closed:
            self.top_up()
        while not self.queue and not self.closed:
            self._wakeup.clear()
            await self._wakeup.wait()

    def next_part(self) -> str:
        """The next part of the snapshot stream at the head of the queue (popped after its last)."""
        stream = self.queue[0]
        assert type(stream) is SnapshotStream
        before = stream.size
        text = stream.next_part()
        self.queued_bytes -= before - stream.size
        if stream.done:
            self.queue.popleft()
        return text

    def take(self, max_messages: int, max_bytes: int) -> list[str]:
        """Pop up to ``max_messages`` frames (at most ``max_bytes`` of UTF-8, or one frame).

        A snapshot stream's next part goes alone, and the stream stays at the
        head until its last part is made: the next part once this one is sent.
        """
        queue = self.queue
        n = min(len(queue), max_messages)
        if n > 1:  # a backlog of log records (live events): the same frames, sized in C
            head = list(itertools.islice(queue, n))
            if set(map(type, head)) == _RECORDS:
                texts: list[str] = list(map(_TEXT, head))
                sizes = map(len, texts) if all(map(str.isascii, texts)) else map(_text_bytes, texts)
                ends = list(itertools.accumulate(sizes))
                # The first frame goes whatever its size; then while the sum fits.
                k = max(1, bisect.bisect_right(ends, max_bytes))
                popleft = queue.popleft
                for _ in range(k):
                    popleft()
                self.queued_bytes -= ends[k - 1]
                return texts if k == n else texts[:k]
        out: list[str] = []
        size = 0
        while queue and len(out) < max_messages:
            item = queue[0]
            if type(item) is SnapshotStream:
                if not out:
                    out.append(self.next_part())
                break
            text = item if type(item) is str else item.text  # type: ignore[union-attr]
            nbytes = _text_bytes(text)
            if out and size + nbytes > max_bytes:
                break
            queue.popleft()
            out.append(text)
            size += nbytes
        self.queued_bytes -= size
        return out

    def take_text(self, max_messages: int, max_bytes: int) -> str | None:
        """The next WebSocket message: one frame alone, or a ``batch`` of the backlog."""
        texts = self.take(max_messages, max_bytes)
        if not texts:
            return None
        return texts[0] if len(texts) == 1 else batch_text(texts)


def now() -> float:
    """Wall-clock seconds for ``serverTime`` fields."""
    return time.time()
