"""The hot path: frame → decode → dedupe → order → merge → log.

:class:`Pipeline` is the sans-I/O event processor of one connection. The
driver hands it every frame it receives (``feed(data, now)``) and gets back
the *control* frames (``subscribed``, ``heartbeat``, ``pong``, ``error``,
``authenticated``, …) that the connection machine needs; events and
snapshots are applied here, to the per-topic stores, and every decision is
written to the log.

Log rows are decisions, not arrivals: an event that arrives early is logged
``buffered`` when it arrives and ``applied`` (or ``replayed``, with 0 bytes)
when the gap before it fills, so "each id applied at most once" can be read
straight off the envelope log, and bytes still sum to what the wire carried.

Gaps are reported, not fixed, here: :meth:`Pipeline.check` returns the
:class:`~rtnb.core.orderer.GapReport`\\ s the driver should answer with a
targeted re-subscribe from :attr:`TopicState.last_token`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, Literal, Protocol

import msgspec

from ..protocol.codec import (
    DEFAULT_MAX_FRAME_SIZE,
    ClientDecoder,
)
from ..protocol.frames import (
    ClientBound,
    Error,
    Event,
    Heartbeat,
    MutationRejected,
    Snapshot,
    Subscribed,
)
from .dedupe import Deduper
from .ledger import MutationLedger, MutationRecord
from .merge import CLIENT_MUTATION_ID, MergeFn
from .orderer import (
    DEFAULT_GAP_TIMEOUT,
    DEFAULT_MAX_BUFFER,
    DEFAULT_MAX_BUFFER_BYTES,
    GapReport,
    Orderer,
    SequenceOrderer,
    make_orderer,
)
from .pipeline_inputs import PipelineInputs
from .runs import PipelineRuns
from .single import PipelineSingle
from .status import OUTCOME_CODES, Outcome
from .store import DEFAULT_MAX_TOPIC_BYTES, TopicStore
from .topics import refusal_status

#: Entities a snapshot sent in parts (``more: true``) may carry before it is
#: refused: 1,000,000. Past it the parts held are dropped, an ``invalid`` row
#: says why, and the connection is reset (:attr:`Pipeline.fault`), so a server
#: that never sends the last part cannot grow the client without bound.
DEFAULT_MAX_SNAPSHOT_ENTITIES: Final = 1_000_000
#: Bytes of parts (as received) a snapshot sent in parts may take before it is
#: refused, as for :data:`DEFAULT_MAX_SNAPSHOT_ENTITIES`: 64 MiB. Repeated entity
#: ids collapse (the last part wins), so what is held is at most what was received.
DEFAULT_MAX_SNAPSHOT_BYTES: Final = 64 * 1024 * 1024

#: ``stale``: the topic's state is frozen over ``max_topic_bytes`` (:attr:`TopicState.over_limit`)
TopicStatus = Literal["pending", "live", "replaying", "stale", "forbidden", "unknown", "refused"]
#: statuses the server's refusal put a topic in (:func:`~rtnb.core.topics.refusal_status`)
REFUSED_STATUSES: Final = frozenset({"forbidden", "unknown", "refused"})

_APPLIED: Final = OUTCOME_CODES[Outcome.APPLIED]
_REPLAYED: Final = OUTCOME_CODES[Outcome.REPLAYED]
_DUPLICATE: Final = OUTCOME_CODES[Outcome.DUPLICATE]
_STALE: Final = OUTCOME_CODES[Outcome.STALE]
_BUFFERED: Final = OUTCOME_CODES[Outcome.BUFFERED]
_INVALID: Final = OUTCOME_CODES[Outcome.INVALID]
_UNEXPECTED: Final = OUTCOME_CODES[Outcome.UNEXPECTED_TOPIC]
_GAP: Final = OUTCOME_CODES[Outcome.GAP_UNRECOVERABLE]
_CODE: Final = {o: OUTCOME_CODES[o] for o in Outcome}
_NAN: Final = math.nan
_APPLIED_OUTCOME: Final = Outcome.APPLIED
#: ``bound`` of a batch frame's event: its store is charged the frame's size once
_CHARGED: Final = -2
_NO_CONTROL: Final[list[ClientBound]] = []
#: characters of a server's refusal message kept on the topic (it is shown to people)
_MAX_ERROR_TEXT: Final = 500
_encode = msgspec.json.encode


class EnvelopeSink(Protocol):
    """Where the pipeline writes one row per envelope decision (the telemetry log)."""

    def append_envelope(
        self,
        received_at: float,
        occurred_at: float,
        topic: str,
        type: str,
        id: str | None,
        sequence: int,
        entity_id: str | None,
        outcome: int,
        transport: str,
        attempt: int,
        nbytes: int,
        error: str | None = None,
        count: int = 1,
    ) -> None: ...


class NullSink:
    """A sink that drops every row (for callers that keep no log)."""

    def append_envelope(self, *args: Any, **kwargs: Any) -> None:
        return None

    def append_envelopes(self, *args: Any, **kwargs: Any) -> None:
        return None


class TopicState:
    """Everything the client knows about one subscribed topic."""

    __slots__ = (
        "_status",
        "applied",
        "confirmed",
        "error",
        "error_code",
        "gaps",
        "last_event_at",
        "last_token",
        "name",
        "orderer",
        "over_limit",
        "partial",
        "partial_bytes",
        "replay_until",
        "stale_after",
        "store",
        "unavailable",
        "unrecoverable",
    )

    def __init__(self, name: str, orderer: Orderer, store: TopicStore) -> None:
        self.name = name
        self.orderer = orderer
        self.store = store
        self._status: TopicStatus = "pending"
        #: the server confirmed the subscription on the current connection
        self.confirmed = False
        #: why the topic's state is frozen (over ``max_topic_bytes``), else None
        self.over_limit: str | None = None
        #: opaque replay token of the last applied event or snapshot (never logged)
        self.last_token: str | None = None
        self.last_event_at: float | None = None
        #: while replaying: the sequence at which the replay has caught up
        self.replay_until: int | None = None
        #: set by ``subscribed{replay: "unavailable"}`` until the snapshot arrives
        self.unavailable = False
        #: the server's message and code when it refused the topic
        self.error: str | None = None
        self.error_code: str | None = None
        #: seconds without an event after which the live topic reads ``quiet``
        self.stale_after: float | None = None
        #: entities of a snapshot that arrives in parts (``more: true``), by id
        self.partial: dict[str, Any] = {}
        #: bytes of those parts as received
        self.partial_bytes = 0
        self.applied = 0
        self.gaps = 0
        self.unrecoverable = 0

    @property
    def status(self) -> TopicStatus:
        """The topic's status; ``stale`` while its state is over ``max_topic_bytes``
        (:attr:`over_limit` says why) whatever the stream says -- decided here only."""
        return "stale" if self.over_limit is not None else self._status

    @status.setter
    def status(self, value: TopicStatus) -> None:
        self._status = value

    @property
    def ordering(self) -> str:
        return self.orderer.mode

    def __repr__(self) -> str:
        return (
            f"<TopicState {self.name!r} {self.status} ordering={self.ordering} "
            f"entities={len(self.store.entities)} applied={self.applied} gaps={self.gaps}>"
        )


class Pipeline(PipelineInputs, PipelineRuns, PipelineSingle):
    """Decode, dedupe, order, merge and log every frame of one connection."""

    #: batch frames take the run path (:meth:`_run`); False: every event one by one
    #: (the differential test compares the two)
    _runs = True

    def __init__(
        self,
        log: EnvelopeSink | None = None,
        *,
        deduper: Deduper | None = None,
        ledger: MutationLedger | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_snapshot_entities: int = DEFAULT_MAX_SNAPSHOT_ENTITIES,
        max_gap_buffer: int = DEFAULT_MAX_BUFFER,
        transport: str = "websocket",
        max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
        max_topic_bytes: int = DEFAULT_MAX_TOPIC_BYTES,
        max_gap_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
    ) -> None:
        if max_snapshot_entities < 1:
            raise ValueError(f"max_snapshot_entities must be >= 1, got {max_snapshot_entities}")
        if max_snapshot_bytes < 1 or max_topic_bytes < 1:
            raise ValueError("max_snapshot_bytes and max_topic_bytes must be >= 1")
        self.max_snapshot_bytes = max_snapshot_bytes
        self.max_topic_bytes = max_topic_bytes
        self.max_gap_buffer_bytes = max_gap_buffer_bytes
        #: the envelope log (set it before feeding: bound methods are cached)
        self.log: EnvelopeSink = log if log is not None else NullSink()
        self.deduper = deduper if deduper is not None else Deduper()
        self.ledger = ledger if ledger is not None else MutationLedger()
        self.decoder = ClientDecoder(max_frame_size)
        self._decode = self.decoder.decode_unchecked
        self._max_frame_size = max_frame_size
        self._seen = self.deduper._seen
        self.max_snapshot_entities = max_snapshot_entities
        self.max_gap_buffer = max_gap_buffer
        self.transport = transport
        self.attempt = 0
        #: set when the stream broke a bound it cannot recover from in place (a
        #: snapshot too large): the driver resets the connection and clears it
        self.fault: str | None = None
        self.topics: dict[str, TopicState] = {}
        #: mutations resolved since the driver last drained them
        self.resolved: list[MutationRecord] = []
        #: called with (topic_state, event, outcome) for every applied event, if set
        self.on_apply: Callable[[TopicState, Event, Outcome], None] | None = None
        self._remember = self.deduper.add
        self._topic = self.topics.get
        self._append = self.log.append_envelope
        self._append_many: Callable[..., None] | None = getattr(self.log, "append_envelopes", None)
        self._lend_rows()
        #: stores charged the size of the batch frame being applied (see ``_batch``)
        self._charged: set[TopicStore] = set()
        self._frame: list[Any] = []
        self._frame_bytes = 0
        self._frame_size = 0

    def connection(self, transport: str, attempt: int, *, opening: bool = False) -> None:
        """The driver's connection changed: rows name this transport and attempt.

        ``opening``: a new transport is being opened, so every topic awaits a
        new confirmation (an error now answers its subscription).
        """
        self.transport = transport
        self.attempt = attempt
        if opening:
            for ts in self.topics.values():
                ts.confirmed = False

    def use_deduper(self, deduper: Deduper) -> None:
        """Swap the duplicate memory (a replay restoring a checkpoint does)."""
        self.deduper = deduper
        self._seen = deduper._seen
        self._remember = deduper.add

    # -- topics ---------------------------------------------------------------

    def add_topic(
        self,
        name: str,
        ordering: str = "sequence",
        *,
        merge: MergeFn | None = None,
        gap_timeout: float = DEFAULT_GAP_TIMEOUT,
        stale_after: float | None = None,
    ) -> TopicState:
        """The topic's state, created if new; asking again for a refused topic
        makes it ``pending`` (the driver subscribes it again)."""
        ts = self.topics.get(name)
        if ts is None:
            orderer = make_orderer(
                name,
                ordering,
                gap_timeout=gap_timeout,
                max_buffer=self.max_gap_buffer,
                max_buffer_bytes=self.max_gap_buffer_bytes,
            )
            ts = TopicState(name, orderer, TopicStore(name, merge, self.max_topic_bytes))
            self.topics[name] = ts
        elif ts.status in REFUSED_STATUSES:
            ts.status = "pending"
            ts.error = ts.error_code = None
        if stale_after is not None:
            ts.stale_after = stale_after
        return ts

    def remove_topic(self, name: str) -> None:
        self.topics.pop(name, None)

    # -- the hot path -----------------------------------------------------------

    def _batch(self, msgs: list[Any], now: float, size: int) -> list[ClientBound]:
        """A ``batch`` frame: each topic's store is charged the frame's size once
        (:meth:`TopicStore.charge`), so no payload is measured; runs of events that
        continue a ``sequence`` topic's position take :meth:`_run`, the rest the
        per-event path."""
        control: list[ClientBound] = []
        n = len(msgs)
        share = size // (n or 1)
        charged = self._charged
        self._frame = msgs
        self._frame_bytes = size
        self._frame_size = -1  # what a store is charged for this frame: computed when needed
        runs = self._runs
        try:
            i = 0
            while i < n:
                msg = msgs[i]
                if type(msg) is Event:
                    if runs and i + 1 < n:
                        j = self._run(msgs, i, n, now, share)
                        if j > 0:
                            i = j
                            continue
                        if j < 0:  # a repeated id: the rest of this frame one by one
                            runs = False
                    self._event(msg, now, share, _CHARGED)
                else:
                    control.extend(self.control(msg, now, share))
                i += 1
        finally:
            for store in charged:
                store.prepaid = 0
            charged.clear()
        return control

    def event(self, ev: Event, now: float, nbytes: int, alone: bool = False) -> None:
        """Dedupe, order, merge and log one event (the hot path: keep it flat).
        ``alone``: the frame of ``nbytes`` held this event only (then its size bounds
        what the payload adds to the state; else the payload is measured)."""
        self._event(ev, now, nbytes, nbytes if alone else -1)

    def _event(self, ev: Event, now: float, nbytes: int, bound: int) -> None:
        ts = self._topic(ev.topic)
        if ts is None:
            self._row(now, ev.occurred_at.timestamp(), ev, _UNEXPECTED, nbytes)
            return
        if ev.id in self._seen:
            self._row(now, ev.occurred_at.timestamp(), ev, _DUPLICATE, nbytes)
            return
        orderer = ts.orderer
        if type(orderer) is SequenceOrderer and ev.sequence == orderer.next_seq:
            orderer.next_seq += 1  # what offer() does for the next event, inline
        else:
            outcome = orderer.offer(ev, now)
            if outcome is not _APPLIED_OUTCOME:
                self._row(now, ev.occurred_at.timestamp(), ev, _CODE[outcome], nbytes)
                return
        self._apply(ts, ev, now, ev.occurred_at.timestamp(), nbytes, bound)
        if type(orderer) is SequenceOrderer and orderer.buffered:
            for later in orderer.drain():
                self._apply(ts, later, now, later.occurred_at.timestamp(), 0)

    def _apply(
        self, ts: TopicState, ev: Event, now: float, occurred: float, nbytes: int, bound: int = -1
    ) -> None:
        store = ts.store
        if bound == _CHARGED:
            bound = 0
            if store not in self._charged and ts.over_limit is None:
                self._charged.add(store)
                store.charge(self._charge())
                if store.over:
                    self._over_limit(ts, now)
        if ts.over_limit is not None:
            self._not_applied(ts, ev, now, occurred, nbytes)
            return
        payload = ev.payload
        seq = ev.sequence
        store.apply(ev.entity_id, ev.type, payload, seq, bound)
        if store.over:
            self._over_limit(ts, now)
        self._remember(ev.id, now)
        ts.last_token = ev.replay_token
        ts.last_event_at = now
        ts.applied += 1
        code = _APPLIED
        if ts.replay_until is not None:
            code = _REPLAYED
            if seq >= ts.replay_until:
                ts.replay_until = None
                ts.status = "live"
        self._append(
            now, occurred, ev.topic, ev.type, ev.id, seq, ev.entity_id,
            code, self.transport, self.attempt, nbytes,
        )  # fmt: skip
        if CLIENT_MUTATION_ID in payload and self.ledger.watching:
            self._confirm(ts, ev, str(payload[CLIENT_MUTATION_ID]), now)
        if self.on_apply is not None:
            self.on_apply(ts, ev, Outcome.REPLAYED if code == _REPLAYED else Outcome.APPLIED)

    def _over_limit(self, ts: TopicState, now: float) -> None:
        """The topic's state passed ``max_topic_bytes``: freeze it, say so (status, log)."""
        store = ts.store
        ts.over_limit = (
            f"state of topic {ts.name!r} is {store.nbytes:,} bytes, over max_topic_bytes="
            f"{store.max_bytes:,}: events are no longer applied (data as of then); raise "
            "rtnb.Limits(max_topic_bytes=...) or unsubscribe"
        )
        self.log.append_envelope(
            now, _NAN, ts.name, "", None, -1, None, _GAP, self.transport, self.attempt, 0,
            ts.over_limit, 0,
        )  # fmt: skip

    def _not_applied(
        self, ts: TopicState, ev: Event, now: float, occurred: float, nbytes: int
    ) -> None:
        """An event for a topic over its cap: remembered (never counted twice), logged
        ``gap_unrecoverable`` with the reason -- lost, and said so."""
        self._remember(ev.id, now)
        ts.unrecoverable += 1
        self.log.append_envelope(
            now, occurred, ev.topic, ev.type, ev.id, ev.sequence, ev.entity_id,
            _GAP, self.transport, self.attempt, nbytes, ts.over_limit, 1,
        )  # fmt: skip

    def _row(self, now: float, occurred: float, ev: Event, code: int, nbytes: int) -> None:
        self.log.append_envelope(
            now, occurred, ev.topic, ev.type, ev.id, ev.sequence, ev.entity_id,
            code, self.transport, self.attempt, nbytes,
        )  # fmt: skip

    def _log_invalid(self, now: float, nbytes: int, error: str) -> None:
        self.log.append_envelope(
            now, _NAN, "", "", None, -1, None, _INVALID, self.transport, self.attempt, nbytes, error
        )

    # -- control frames -----------------------------------------------------------

    def control(self, frame: ClientBound, now: float, nbytes: int = 0) -> list[ClientBound]:
        """Apply what a control frame means for topics and mutations; pass it on
        (``nbytes``: the frame's size as received, 0 if unknown)."""
        kind = type(frame)
        if kind is Snapshot:
            assert isinstance(frame, Snapshot)
            self.snapshot(frame, now, nbytes)
        elif kind is Subscribed:
            assert isinstance(frame, Subscribed)
            self._subscribed(frame)
        elif kind is Heartbeat:
            assert isinstance(frame, Heartbeat)
            self._heartbeat(frame, now)
        elif kind is MutationRejected:
            assert isinstance(frame, MutationRejected)
            rec = self.ledger.reject(frame.client_mutation_id, frame.code, frame.message, now)
            if rec is not None:
                ts = self.topics.get(rec.topic)
                if ts is not None:
                    ts.store.remove_pending(rec.entity_id, rec.client_mutation_id)
                self.resolved.append(rec)
        elif kind is Error:
            assert isinstance(frame, Error)
            if frame.topic is not None:
                ts = self.topics.get(frame.topic)
                status = None if ts is None else refusal_status(frame.code, not ts.confirmed)
                if ts is not None and status is not None:
                    ts.status = status  # type: ignore[assignment]
                    ts.error = frame.message[:_MAX_ERROR_TEXT]
                    ts.error_code = frame.code[:_MAX_ERROR_TEXT]
                    ts.replay_until = None
        return [frame]

    def _subscribed(self, frame: Subscribed) -> None:
        ts = self.topics.get(frame.topic)
        if ts is None:
            return
        # a new subscription: parts of a snapshot cut short (a lost connection)
        # never join the parts of the next one
        ts.partial, ts.partial_bytes = {}, 0
        ts.confirmed = True
        if frame.replay == "complete":
            pos = ts.orderer.position()
            latest = frame.latest_sequence
            if latest is not None and (pos is None or latest > pos):
                ts.status = "replaying"
                ts.replay_until = latest
            else:
                ts.status = "live"
                ts.replay_until = None
        elif frame.replay == "unavailable":
            ts.status = "replaying"
            ts.unavailable = True
        else:  # "none": a snapshot follows
            ts.status = "replaying"

    def snapshot(self, snap: Snapshot, now: float, nbytes: int = 0) -> None:
        """Replace a topic's state; log the range no event will ever fill."""
        ts = self.topics.get(snap.topic)
        if ts is None:
            return
        entities: Any = snap.entities
        if snap.more or ts.partial:
            if nbytes <= 0:
                nbytes = len(_encode(snap.entities))
            ts.partial_bytes += nbytes
            if ts.partial_bytes > self.max_snapshot_bytes:
                self._refuse_parts(ts, now, self.max_snapshot_bytes, "bytes", "max_snapshot_bytes")
                return
            partial = ts.partial
            new = sum(1 for e in snap.entities if e.entity_id not in partial)
            if len(partial) + new > self.max_snapshot_entities:
                cap = self.max_snapshot_entities
                self._refuse_parts(ts, now, cap, "entities", "max_snapshot_entities")
                return
            for e in snap.entities:  # a repeated id replaces the entity held
                partial[e.entity_id] = e
            if snap.more:
                return
            entities, ts.partial, ts.partial_bytes = partial.values(), {}, 0
        pos = ts.orderer.position()
        if pos is not None and snap.sequence > pos:
            # One row for the whole range (sequence .. sequence + count - 1): O(1)
            # whatever a snapshot claims, even a sequence of 2**62.
            missing = snap.sequence - pos
            self.log.append_envelope(
                now, _NAN, ts.name, "", None, pos + 1, None, _GAP, self.transport, self.attempt, 0,
                None, missing,
            )  # fmt: skip
            ts.unrecoverable += missing
            ts.gaps += 1
        elif pos is not None and snap.sequence < pos:
            self.log.append_envelope(
                now, _NAN, ts.name, "", None, -1, None, _GAP, self.transport, self.attempt, 0,
                f"log restarted at sequence {snap.sequence} (was {pos}): state replaced",
            )  # fmt: skip
            ts.gaps += 1
        ts.store.replace((e.entity_id, e.state, e.sequence) for e in entities)
        if ts.store.over:
            self._over_limit(ts, now)
        else:
            ts.over_limit = None
        for later in ts.orderer.reset(snap.sequence, dict(ts.store.sequences)):
            self._apply(ts, later, now, later.occurred_at.timestamp(), 0)
        if snap.token is not None:
            ts.last_token = snap.token
        ts.unavailable = False
        ts.replay_until = None
        ts.status = "live"
        ts.last_event_at = now

    def _refuse_parts(self, ts: TopicState, now: float, cap: int, unit: str, name: str) -> None:
        ts.partial, ts.partial_bytes = {}, 0
        error = (
            f"snapshot of topic {ts.name!r} in parts passed {cap:,} {unit} ({name}); parts "
            f"dropped, reconnecting. Raise {name} if the topic really is this large"
        )
        self._log_invalid(now, 0, error)
        self.fault = f"snapshot over {name}={cap:,}"

    def _heartbeat(self, hb: Heartbeat, now: float) -> None:
        for name, seq in hb.sequences.items():
            ts = self.topics.get(name)
            if ts is not None and type(ts.orderer) is SequenceOrderer:
                ts.orderer.note_latest(seq, now)

    # -- mutations -------------------------------------------------------------------

    def _confirm(self, ts: TopicState, ev: Event, cmid: str, now: float) -> None:
        rec = self.ledger.confirm(cmid, now)
        if rec is None:
            return
        if rec.status == "confirmed":
            ts.store.remove_pending(rec.entity_id, cmid)
        self.resolved.append(rec)

    # -- gaps ---------------------------------------------------------------------

    def check(self, now: float) -> list[GapReport]:
        """Gaps that should now be recovered by a targeted re-subscribe.

        Each such topic is ``replaying`` from now until the re-subscription
        catches up (the driver sends it; it decides nothing about the status).
        """
        out: list[GapReport] = []
        for ts in self.topics.values():
            rep = ts.orderer.check(now)
            if rep is not None:
                ts.gaps += 1
                ts.status = "replaying"
                out.append(rep)
        return out
