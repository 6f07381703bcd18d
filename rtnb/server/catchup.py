"""A replay streamed from the topic's log at the pace the client reads (issue 22).

A replay used to be pushed into the send queue whole. One larger than the queue's
byte cap was cut at once (or at the next live event), so a client cut as a slow
consumer reconnected, replayed, was cut again — and never caught up, even after the
publisher stopped. Now a connection that is behind holds a :class:`Catchup` per topic:
its position in the log. The session tops its queue up from it (to half the cap,
once below a quarter) as the writer comes back for more, i.e. as fast as the
socket drains; the topic's live events are not queued meanwhile (they are in the log, and the catch-up
reads them in order) and the catch-up ends — the topic goes live — in the same step
that reads the log's last committed event, so nothing falls between.

A live topic falls behind the same way (``Session._fall_behind``): when its events
would take the queue past three quarters of a cap, a :class:`Catchup` starts at the
last event of the topic already queued, and the socket's pace decides from there.

Memory stays bounded: the queue holds at most about half the cap of replay, and a
client that does not read at all stays where it is until the log's retention passes
its position; then it is cut as a slow consumer (its reconnect gets
``replay: "unavailable"`` and a snapshot — what it would get anyway).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .storage import LogRecord
    from .topiclog import TopicLog

#: Records read from the log per step when topping a queue up (a read from the
#: in-memory log walks its deque to the position: fewer, larger reads).
READ_STEP: Final = 16_384
_TEXT: Final = operator.attrgetter("text")


class Catchup:
    """Where a connection is in one topic's log while it catches up.

    ``pending``: records already read for the replay by a sequenced store
    (``XRANGE``), sent before anything is read from the in-memory log.
    """

    __slots__ = ("log", "pending", "sequence", "token")

    def __init__(self, log: TopicLog, after: int, pending: list[LogRecord]) -> None:
        self.log = log
        self.sequence = after  # the last event queued for the client
        self.token = ""  # its replay token (set once one is queued)
        self.pending = pending

    @property
    def caught_up(self) -> bool:
        return not self.pending and self.sequence >= self.log.latest

    @property
    def lost(self) -> bool:
        """True once retention dropped events the client has not been sent."""
        return not self.pending and self.sequence < self.log.first() - 1

    def take(self, max_frames: int, max_bytes: int) -> tuple[list[LogRecord], int]:
        """The next records and their UTF-8 bytes: at least one if any is committed,
        then while within both limits (sized in C, as ``Session.take`` does).

        Raises :class:`LookupError` if the log no longer holds the next one (retention).
        """
        out: list[LogRecord] = []
        size = 0
        while len(out) < max_frames:
            want = min(READ_STEP, max_frames - len(out))
            if self.pending:
                step = self.pending[:want]
            else:
                step = self.log.read(self.sequence, want)
                if step and step[0].sequence != self.sequence + 1:
                    raise LookupError(self.sequence)
            if not step:
                break
            texts = list(map(_TEXT, step))
            if all(map(str.isascii, texts)):
                sizes: Iterable[int] = map(len, texts)
            else:
                sizes = (len(text.encode()) for text in texts)
            ends = list(itertools.accumulate(sizes, initial=size))
            taken = bisect.bisect_right(ends, max_bytes) - 1  # ends[0] is what was taken before
            if not out:
                taken = max(1, taken)  # the first record goes whatever its size
            if not taken:
                break
            out.extend(step if taken == len(step) else step[:taken])
            size = ends[taken]
            if self.pending:
                del self.pending[:taken]
            last = step[taken - 1]
            self.sequence, self.token = last.sequence, last.token
            if taken < len(step):
                break
        return out, size
