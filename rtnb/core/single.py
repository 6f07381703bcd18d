"""``Pipeline.feed``, with the single-event frame's common case folded in (issue 22).

A frame that holds one event is, nearly always, the next event of a ``sequence``
topic: not a duplicate, no gap buffered, no custom merge, no delete, no mutation id,
not replaying, not frozen, no measure of the state due. :meth:`PipelineSingle.feed`
applies that case in one function with locals -- what ``_event`` → ``_apply`` →
``TopicStore.apply`` → ``Deduper.add`` do for it, in the same order, with no call but
the log's -- and hands anything else to the per-event path (``Pipeline._event``), which
is the reference: ``tests/core/test_pipeline_single.py`` feeds random frame sequences
both ways and compares every state, counter, duplicate memory, hook call and log row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..protocol.codec import frame_bytes, invalid_frame_from
from ..protocol.errors import FrameTooLarge, InvalidFrame
from ..protocol.frames import Batch, ClientBound, Event
from .dedupe import Deduper
from .merge import CLIENT_MUTATION_ID, DELETED_SUFFIX, shallow_merge
from .orderer import SequenceOrderer
from .runs import EVENT_TEXT
from .status import OUTCOME_CODES, Outcome

if TYPE_CHECKING:
    from .pipeline import EnvelopeSink, TopicState

_APPLIED: Final = OUTCOME_CODES[Outcome.APPLIED]
_APPLIED_OUTCOME: Final = Outcome.APPLIED
_NO_CONTROL: Final[list[ClientBound]] = []
#: what a pipeline borrows from its log (never copied with the pipeline)
_LENT: Final = ("_rows", "_rows_full", "_rows_commit")


class PipelineSingle:
    """:meth:`feed` (see the module doc); :class:`Pipeline` sets the attributes and
    methods declared here."""

    #: single-event frames take the folded common case; False: always the per-event
    #: path (the differential test compares the two)
    _single = True

    log: EnvelopeSink
    deduper: Deduper
    on_apply: Callable[[TopicState, Event, Outcome], None] | None
    transport: str
    attempt: int
    _max_frame_size: int
    _decode: Callable[[bytes | str], Any]
    _topic: Callable[[str], TopicState | None]
    topics: dict[str, TopicState]
    _append: Callable[..., None]
    _rows: list[Any] | None
    _rows_full: int
    _rows_commit: Callable[..., None]

    _seen: dict[str, float]

    if TYPE_CHECKING:

        def _log_invalid(self, now: float, nbytes: int, error: str) -> None: ...
        def _event(self, ev: Event, now: float, nbytes: int, bound: int) -> None: ...
        def _batch(self, msgs: list[Any], now: float, size: int) -> list[ClientBound]: ...
        def control(self, frame: ClientBound, now: float, nbytes: int = 0) -> list[ClientBound]: ...

    def _lend_rows(self) -> None:
        """Borrow the row buffer of a log that lends one (``EnvelopeLog.envelope_rows``):
        the fast path adds its rows there, as ``append_envelope`` does."""
        lend = getattr(self.log, "envelope_rows", None)
        self._rows, self._rows_full, self._rows_commit = lend() if lend else (None, 0, self._append)

    def __getstate__(self) -> dict[str, Any]:
        """A copy (a replay's checkpoint) borrows the buffer of its own log (the same log
        when the copy shares it): what this one borrowed is left out, taken again in
        :meth:`__setstate__`, as is the cached ``topics.get`` (a builtin bound method is
        copied as is: it would read the original's topics)."""
        state = self.__dict__.copy()
        for name in _LENT:
            del state[name]
        del state["_topic"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._topic = self.topics.get
        self._lend_rows()

    def feed(self, data: bytes | str, now: float) -> list[ClientBound]:
        """Process one received frame; return the control frames among it."""
        size = len(data)
        if size * 4 > self._max_frame_size:  # the limit is in UTF-8 bytes, for str too
            nbytes = frame_bytes(data, self._max_frame_size)
            if nbytes > self._max_frame_size:
                self._log_invalid(now, nbytes, str(FrameTooLarge(nbytes, self._max_frame_size)))
                return _NO_CONTROL
        try:
            ev = self._decode(data)
        except msgspec.MsgspecError as exc:
            self._log_invalid(now, size, str(invalid_frame_from(exc)))
            return _NO_CONTROL
        except RecursionError:  # a hostile frame nested 100k deep: invalid, never fatal
            self._log_invalid(
                now, size, str(InvalidFrame("$", "malformed JSON: nested too deeply"))
            )
            return _NO_CONTROL
        kind = type(ev)
        if kind is not Event:
            if kind is Batch:
                return self._batch(ev.messages, now, size)
            return self.control(ev, now, size)
        topic = ev.topic
        eid = ev.id
        etype = ev.type
        # what the payload may add to the state: the frame less its other text
        bound = size - len(eid) - len(etype) - len(topic) - len(ev.replay_token) - EVENT_TEXT
        if bound < 1:
            bound = 1
        ts = self._topic(topic)
        if ts is not None and self._single:
            dd = self.deduper
            seen = self._seen
            orderer = ts.orderer
            store = ts.store
            payload = ev.payload
            seq = ev.sequence
            if (
                eid not in seen
                and type(orderer) is SequenceOrderer
                and seq == orderer.next_seq
                and not orderer.held
                and ts.over_limit is None
                and ts.replay_until is None
                and store.merge is shallow_merge
                and store.nbytes + bound <= store.measure_at
                and CLIENT_MUTATION_ID not in payload
                and not etype.endswith(DELETED_SUFFIX)
            ):
                # _event: the next sequence, ordered inline
                orderer.next_seq = seq + 1
                # TopicStore.apply: the default merge, the size bound grown by ``bound``
                entity = ev.entity_id
                ents = store.entities
                cur = ents.get(entity)
                ents[entity] = cur | payload if cur else dict(payload)
                store.sequences[entity] = seq
                cursors = store.cursors
                if cursors:
                    for c in cursors:
                        c.changed.add(entity)
                store.nbytes += bound
                # Deduper.add of an id not remembered
                seen[eid] = now
                fifo = dd.fifo
                fifo.append(eid)
                if now >= dd.expires or len(fifo) > dd.max_entries:
                    dd.evict(now)
                ts.last_token = ev.replay_token
                ts.last_event_at = now
                ts.applied += 1
                rows = self._rows
                if rows is None:
                    self._append(
                        now, ev.occurred_at.timestamp(), topic, etype, eid, seq, entity,
                        _APPLIED, self.transport, self.attempt, size,
                    )  # fmt: skip
                else:  # EnvelopeLog.append_envelope, inline
                    rows += (
                        now, ev.occurred_at.timestamp(), topic, etype, eid, seq, entity,
                        _APPLIED, self.transport, self.attempt, size, 1, None,
                    )  # fmt: skip
                    if len(rows) >= self._rows_full:
                        self._rows_commit(blocking=False)
                hook = self.on_apply
                if hook is not None:
                    hook(ts, ev, _APPLIED_OUTCOME)
                return _NO_CONTROL
        self._event(ev, now, size, bound)
        return _NO_CONTROL
