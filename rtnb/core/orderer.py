"""Ordering policies, one per topic (DESIGN.md §4).

Every decision is an :class:`~rtnb.core.status.Outcome`:

``sequence``
    Events must be applied in contiguous ``sequence`` order. An event ahead of
    the next expected sequence is ``BUFFERED``; when the missing one arrives,
    ``drain()`` hands back the buffered run that became contiguous. A gap that
    stays open longer than ``gap_timeout``, or a buffer that passes
    ``max_buffer`` events or ``max_buffer_bytes``, is reported by ``check(now)``
    as a :class:`GapReport` so the driver can re-subscribe from the last applied token (the server replays the
    missing range). After a snapshot, ``reset(sequence)`` restarts the count
    from the snapshot's sequence.
``entity``
    Latest wins per entity: an event is applied only if its sequence is newer
    than the entity's current one, else it is ``STALE``.
``none``
    Arrival order; only duplicates (by id, upstream) are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

import msgspec

from ..protocol.frames import Event
from .status import Outcome

Ordering = Literal["sequence", "entity", "none"]

#: Seconds a sequence gap may stay open before it is reported: 1.0.
DEFAULT_GAP_TIMEOUT: Final = 1.0
#: Out-of-order events held per topic before the gap is reported at once: 10,000.
DEFAULT_MAX_BUFFER: Final = 10_000
#: Bytes of out-of-order events (as JSON) held per topic, likewise: 16 MiB -- 10,000
#: events of 1.6 KB; without it 10,000 events of 1 MiB (the frame limit) were 10 GiB.
DEFAULT_MAX_BUFFER_BYTES: Final = 16 * 1024 * 1024
_encode = msgspec.json.encode

APPLIED: Final = Outcome.APPLIED
BUFFERED: Final = Outcome.BUFFERED
STALE: Final = Outcome.STALE
DUPLICATE: Final = Outcome.DUPLICATE


@dataclass(frozen=True, slots=True)
class GapReport:
    """Sequences ``first``..``last`` (inclusive) are missing on ``topic``."""

    topic: str
    first: int
    last: int
    reason: str

    @property
    def size(self) -> int:
        return self.last - self.first + 1


class Orderer(Protocol):
    mode: Ordering

    def offer(self, event: Event, now: float) -> Outcome: ...
    def drain(self) -> list[Event]: ...
    def check(self, now: float) -> GapReport | None: ...
    def reset(self, sequence: int, entity_sequences: dict[str, int]) -> list[Event]: ...
    def position(self) -> int | None: ...


class SequenceOrderer:
    """Contiguous per-topic order with a bounded gap buffer."""

    mode: Ordering = "sequence"
    __slots__ = (
        "_bytes",
        "_gap_since",
        "_latest",
        "_overflow",
        "_reported_at",
        "_sizes",
        "gap_timeout",
        "held",
        "max_buffer",
        "max_buffer_bytes",
        "next_seq",
        "topic",
    )

    def __init__(
        self,
        topic: str,
        *,
        gap_timeout: float = DEFAULT_GAP_TIMEOUT,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
    ) -> None:
        if not gap_timeout > 0:
            raise ValueError(f"gap_timeout must be > 0 seconds, got {gap_timeout}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, got {max_buffer}")
        self.topic = topic
        self.gap_timeout = gap_timeout
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        #: bytes held (each buffered event measured as JSON when it is buffered, a rare path)
        self._bytes = 0
        self._sizes: dict[int, int] = {}
        #: next sequence to apply; None until a snapshot or a first event sets the baseline
        self.next_seq: int | None = None
        #: events waiting for a gap to fill, by sequence
        self.held: dict[int, Event] = {}
        self._gap_since: float | None = None
        self._reported_at: float | None = None
        #: the newest sequence the server says exists (from heartbeats)
        self._latest: int | None = None
        #: an event arrived while the buffer was full (it was not kept)
        self._overflow = False

    def position(self) -> int | None:
        """The last applied sequence, if known."""
        return None if self.next_seq is None else self.next_seq - 1

    @property
    def buffered(self) -> int:
        return len(self.held)

    def offer(self, event: Event, now: float) -> Outcome:
        seq = event.sequence
        nxt = self.next_seq
        if nxt is None or seq == nxt:
            self.next_seq = seq + 1
            return APPLIED
        if seq < nxt:
            return STALE
        buf = self.held
        if seq in buf:
            return DUPLICATE
        size = len(_encode(event))
        if len(buf) >= self.max_buffer or self._bytes + size > self.max_buffer_bytes:
            # Never hold more than max_buffer (events or bytes): the event is not
            # kept, and the next check() reports the gap at once; the
            # re-subscription from the last applied token replays it with the ones held.
            self._overflow = True
        else:
            buf[seq] = event
            self._sizes[seq] = size
            self._bytes += size
        if self._gap_since is None:
            self._gap_since = now
        return BUFFERED

    def drain(self) -> list[Event]:
        """Buffered events that became contiguous, in order (call after an apply)."""
        buf = self.held
        if not buf:
            return []
        out: list[Event] = []
        nxt = self.next_seq
        assert nxt is not None
        sizes = self._sizes
        while nxt in buf:
            out.append(buf.pop(nxt))
            self._bytes -= sizes.pop(nxt, 0)
            nxt += 1
        self.next_seq = nxt
        if not buf and (self._latest is None or self._latest < nxt):
            self._gap_since = None
            self._reported_at = None
        return out

    def note_latest(self, sequence: int, now: float) -> None:
        """The server says ``sequence`` exists (a heartbeat): a missed *last* event
        shows up here as a tail gap, reported by :meth:`check` like any other."""
        if self._latest is None or sequence > self._latest:
            self._latest = sequence
        if self.next_seq is not None and sequence >= self.next_seq and self._gap_since is None:
            self._gap_since = now

    def check(self, now: float) -> GapReport | None:
        """Report the open gap if it outlived ``gap_timeout`` or the buffer is full.

        A reported gap is reported again only after another ``gap_timeout``,
        so a slow replay does not cause a re-subscribe storm. When the buffer
        is full it is emptied: the re-subscription replays those events too.
        """
        buf = self.held
        nxt = self.next_seq
        if nxt is None:
            return None
        if buf:
            first, last = nxt, min(buf) - 1
        elif self._overflow:  # max_buffer == 0 is refused, so only after a clear
            first, last = nxt, nxt
        elif self._latest is not None and self._latest >= nxt:
            first, last = nxt, self._latest  # tail gap
        else:
            self._gap_since = self._reported_at = None
            return None
        if self._overflow or len(buf) >= self.max_buffer:
            held = self._bytes
            buf.clear()
            self._sizes.clear()
            self._bytes = 0
            self._overflow = False
            self._gap_since = None
            self._reported_at = now
            return GapReport(
                self.topic,
                first,
                last,
                f"buffer limit {self.max_buffer} reached ({held:,} of {self.max_buffer_bytes:,} "
                "bytes held)",
            )
        since = self._reported_at if self._reported_at is not None else self._gap_since
        assert since is not None
        if now - since >= self.gap_timeout:
            self._reported_at = now
            waited = now - (self._gap_since or now)
            return GapReport(self.topic, first, last, f"gap open for {waited:.1f} s")
        return None

    def reset(self, sequence: int, entity_sequences: dict[str, int]) -> list[Event]:
        """Restart from a snapshot at ``sequence``; return buffered events now applicable."""
        self.next_seq = sequence + 1
        buf = self.held
        for s in [s for s in buf if s <= sequence]:
            del buf[s]
            self._bytes -= self._sizes.pop(s, 0)
        if self._latest is not None and self._latest < sequence:
            self._latest = None  # the log restarted (a new epoch): forget the old tail
        if not buf:
            self._gap_since = None
            self._reported_at = None
        return self.drain()


class EntityOrderer:
    """Latest wins per entity, by sequence."""

    mode: Ordering = "entity"
    __slots__ = ("_last", "_seqs", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._seqs: dict[str, int] = {}
        self._last: int | None = None

    def position(self) -> int | None:
        return self._last

    def offer(self, event: Event, now: float) -> Outcome:
        seqs = self._seqs
        eid = event.entity_id
        cur = seqs.get(eid)
        if cur is not None and event.sequence <= cur:
            return STALE if event.sequence < cur else DUPLICATE
        seqs[eid] = event.sequence
        if self._last is None or event.sequence > self._last:
            self._last = event.sequence
        return APPLIED

    def drain(self) -> list[Event]:
        return []

    def check(self, now: float) -> GapReport | None:
        return None

    def reset(self, sequence: int, entity_sequences: dict[str, int]) -> list[Event]:
        self._seqs = dict(entity_sequences)
        self._last = sequence
        return []


class NoOrderer:
    """Arrival order."""

    mode: Ordering = "none"
    __slots__ = ("_last", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._last: int | None = None

    def position(self) -> int | None:
        return self._last

    def offer(self, event: Event, now: float) -> Outcome:
        self._last = event.sequence
        return APPLIED

    def drain(self) -> list[Event]:
        return []

    def check(self, now: float) -> GapReport | None:
        return None

    def reset(self, sequence: int, entity_sequences: dict[str, int]) -> list[Event]:
        self._last = sequence
        return []


def make_orderer(
    topic: str,
    mode: str,
    *,
    gap_timeout: float = DEFAULT_GAP_TIMEOUT,
    max_buffer: int = DEFAULT_MAX_BUFFER,
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
) -> Orderer:
    """Build the orderer for ``mode``; an unknown mode is a caller error."""
    if mode == "sequence":
        return SequenceOrderer(
            topic, gap_timeout=gap_timeout, max_buffer=max_buffer, max_buffer_bytes=max_buffer_bytes
        )
    if mode == "entity":
        return EntityOrderer(topic)
    if mode == "none":
        return NoOrderer(topic)
    raise ValueError(f"ordering must be 'sequence', 'entity' or 'none', got {mode!r}")
