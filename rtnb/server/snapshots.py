"""A snapshot streamed in parts, with flow control (DESIGN.md §3 and §4, server limits).

A topic's snapshot can be far larger than a connection's send queue (an 18 MB
topic, an 8 MiB queue). Encoding it whole onto the queue made every live event
that followed overflow the queue while the client was still reading it, so a
live topic that size could never be subscribed: cut as a slow consumer (1013)
on every attempt. A :class:`SnapshotStream` instead sits in the queue as one
item and is encoded one part (at most ``SNAPSHOT_CHUNK_BYTES``, 256 KiB) at a
time, when the connection's writer reaches it: the next part is made only once
the previous one has left the queue and been handed to the socket (whose own
flow control holds the writer while the peer is behind). A client that keeps up
therefore always gets the snapshot, whatever its size. The stream counts in the
queue's byte limit for what it holds: its first part (made at once) and its view.

Every part shares the snapshot's ``token`` and ``sequence``; all but the last
carry ``more: true`` (the protocol's split snapshots). The parts are cut from
a view of the topic taken when the stream was made — the entity maps copied
(references to the states, which the log replaces rather than edits) — so they
are consistent with the log position they name, and events committed meanwhile
follow the last part in the queue: no gap and no overlap at the seam. What a
stream holds until its last part is sent is that view (the two maps' tables,
counted with ``sys.getsizeof``: tens of bytes per entity), plus any state the
log has replaced since.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, Final

import msgspec

from ..protocol.frames import Snapshot, SnapshotEntity
from .topiclog import SNAPSHOT_CHUNK_BYTES, TopicLog

_ENCODER: Final = msgspec.json.Encoder()
_LAST: Final = b'"more":false}'
_MORE: Final = b'"more":true}'


class SnapshotStream:
    """One topic's snapshot, encoded part by part as it is sent."""

    __slots__ = (
        "_carry",
        "_head",
        "_keys",
        "_last_made",
        "_ready",
        "_sequences",
        "_states",
        "_tail",
        "_view_bytes",
        "done",
        "max_bytes",
        "parts",
        "size",
        "token",
        "topic",
    )

    def __init__(self, topic_log: TopicLog, max_bytes: int = SNAPSHOT_CHUNK_BYTES) -> None:
        self.topic = topic_log.topic
        self.token = topic_log.token()
        self.max_bytes = max_bytes
        # The view: the maps copied now (C-level copies; the states are shared).
        self._states: dict[str, dict[str, Any]] = dict(topic_log.entities)
        self._sequences: dict[str, int] = dict(topic_log.entity_sequence)
        self._keys: Iterator[str] = iter(self._states)
        empty = _ENCODER.encode(
            Snapshot(topic=self.topic, entities=[], token=self.token, sequence=topic_log.latest)
        )
        at = empty.index(b'"entities":[]') + len(b'"entities":[')
        self._head, self._tail = empty[:at], empty[at:]
        self._carry: bytes | None = None  # an entity encoded that did not fit the last part
        self.parts = 0  # parts made so far
        self.done = False  # the last part was taken
        self._last_made = False
        self._view_bytes = sys.getsizeof(self._states) + sys.getsizeof(self._sequences)
        # The first part is made now: its bytes count in the queue from the start.
        self._ready: str | None = self._make()
        self.size = self._view_bytes + len(self._ready)

    def __repr__(self) -> str:  # the frames carry a replay token: never in a repr
        return f"<SnapshotStream {self.topic!r} parts={self.parts} done={self.done}>"

    @property
    def whole(self) -> bool:
        """The snapshot is one part, made already (nothing taken yet)."""
        return self._last_made and self.parts == 1 and not self.done

    def next_part(self) -> str:
        """Take the next part's frame text; :attr:`done` says whether it was the last.

        :attr:`size` is what the stream holds now, in bytes, for the send queue's
        byte limit: its view and the part made but not yet taken (none after the
        first: later parts are made as they are taken). 0 once done.
        """
        if self.done:
            raise RuntimeError(f"the snapshot of {self.topic!r} was sent whole already")
        text, self._ready = self._ready, None
        if text is None:
            text = self._make()
        self.done = self._last_made
        self.size = 0 if self.done else self._view_bytes
        return text

    def _make(self) -> str:
        """Encode the next part. One entity larger than a part travels alone
        (publishing refused any entity whose snapshot frame would exceed the frame limit)."""
        budget = self.max_bytes - len(self._head) - len(self._tail)
        pieces: list[bytes] = []
        size = 0
        if self._carry is not None:
            pieces.append(self._carry)
            size = len(self._carry)
            self._carry = None
        states, sequences = self._states, self._sequences
        for entity_id in self._keys:
            piece = _ENCODER.encode(
                SnapshotEntity(
                    entity_id=entity_id, state=states[entity_id], sequence=sequences[entity_id]
                )
            )
            cost = len(piece) + (1 if pieces else 0)
            if pieces and size + cost > budget:
                self._carry = piece
                break
            pieces.append(piece)
            size += cost
        self.parts += 1
        if self._carry is None:  # every entity is in a part: this is the last
            self._last_made = True
            self._states, self._sequences = {}, {}  # the view is no longer needed
            return (self._head + b",".join(pieces) + self._tail).decode()
        return (self._head + b",".join(pieces) + self._tail.replace(_LAST, _MORE)).decode()

    def texts(self) -> list[str]:
        """Every part at once (for answers that are not streamed)."""
        out = [self.next_part()]
        while not self.done:
            out.append(self.next_part())
        return out
