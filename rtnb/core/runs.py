"""The batch run path of :class:`~rtnb.core.pipeline.Pipeline` (issue 22).

A ``batch`` frame under load is mostly one topic's next events, in order. For such
a run :meth:`PipelineRuns._run` (mixed into the pipeline) checks contiguity once (the whole frame in C when it is all
one run), applies the merges in one loop (:meth:`TopicStore.apply_run`), remembers
the ids in bulk (:meth:`Deduper.add_new`) and logs the rows as columns
(``append_envelopes``): the same state, counters, statuses, hook calls and log rows
as the per-event path (``tests/core/test_pipeline_runs.py`` compares the two on random
streams). Anything unusual goes back to the per-event path.

:func:`frame_charge` is what a batch frame may add to a store's state, at most: the
store is charged it once per frame, so no payload is encoded to bound the state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final

from ..protocol.frames import Event
from .dedupe import Deduper
from .ledger import MutationLedger
from .merge import shallow_merge
from .orderer import SequenceOrderer
from .status import OUTCOME_CODES, Outcome
from .store import TopicStore

if TYPE_CHECKING:
    from .pipeline import TopicState

_APPLIED: Final = OUTCOME_CODES[Outcome.APPLIED]
_REPLAYED: Final = OUTCOME_CODES[Outcome.REPLAYED]
_APPLIED_OUTCOME: Final = Outcome.APPLIED
#: Bytes of an event's JSON text that are never its entity id or payload, at least:
#: the keys ``"op":"event"``, ``"id":``, ``"type":``, ``"topic":``, ``"sequence":``,
#: ``"entityId":``, ``"occurredAt":``, ``"replayToken":`` (81), braces and commas (9),
#: the quotes of four strings (8), a digit, the shortest time (18); less the 4 bytes a
#: state entry adds beyond its id and payload (``:`` and ``,``; ``{}`` if no payload).
EVENT_TEXT: Final = 81 + 9 + 8 + 1 + 18 - 4
_ID: Final = attrgetter("id")
_TYPE: Final = attrgetter("type")
_TOPIC: Final = attrgetter("topic")
_TOKEN: Final = attrgetter("replay_token")
_SEQ: Final = attrgetter("sequence")
_ENTITY: Final = attrgetter("entity_id")
_OCCURRED: Final = attrgetter("occurred_at")
_TIMESTAMP: Final = datetime.timestamp
_EVENTS: Final = {Event}


def frame_charge(msgs: list[Any], size: int) -> int:
    """What the batch frame being applied may add to a store's state, at most: its
    size less the text of its events that is certainly not an entity id or a
    payload (keys, ids, types, topics, tokens and the least a time and a sequence
    take; a string of n characters takes at least n bytes of JSON)."""
    try:
        text = (
            sum(map(len, map(_ID, msgs)))
            + sum(map(len, map(_TYPE, msgs)))
            + sum(map(len, map(_TOPIC, msgs)))
            + sum(map(len, map(_TOKEN, msgs)))
        )
        events = len(msgs)
    except AttributeError:  # control frames among the events
        evs = [m for m in msgs if type(m) is Event]
        text = sum(len(e.id) + len(e.type) + len(e.topic) + len(e.replay_token) for e in evs)
        events = len(evs)
    return max(0, size - text - events * EVENT_TEXT)


class PipelineRuns:
    """The batch run path (see the module doc); :class:`Pipeline` sets the attributes
    declared here."""

    topics: dict[str, TopicState]
    ledger: MutationLedger
    deduper: Deduper
    on_apply: Callable[[TopicState, Event, Outcome], None] | None
    transport: str
    attempt: int
    _seen: dict[str, float]
    _charged: set[TopicStore]
    _append: Callable[..., None]
    _append_many: Callable[..., None] | None

    _frame: list[Any]
    _frame_bytes: int
    _frame_size: int

    def _charge(self) -> int:
        """What each store is charged for the batch frame being applied (computed once)."""
        if self._frame_size < 0:
            self._frame_size = frame_charge(self._frame, self._frame_bytes)
        return self._frame_size

    def _run(self, msgs: list[Any], i: int, n: int, now: float, share: int) -> int:
        """Apply the run of events at ``msgs[i]`` that continue their ``sequence``
        topic's position (same topic, contiguous, ids new), in one loop: the same
        state, counters, statuses and log rows as the per-event path, with
        contiguity checked once, ids remembered and rows logged in bulk. Returns
        the index after the run, or 0 (nothing done) when the per-event path must
        decide: an unknown topic, another ordering, a gap buffer, a frozen topic, a
        custom merge, a mutation awaiting confirmation, a measure due, or a run
        shorter than two events (-1 if that is because of an id already seen: the
        rest of the frame then goes one by one, so a hostile frame costs O(n)).

        With an ``on_apply`` hook, each call sees the store, ``applied``,
        ``last_token`` and status as of its event (as on the per-event path); the
        run's log rows and ids are written once the run is done."""
        first = msgs[i]
        topic = first.topic
        ts = self.topics.get(topic)
        if ts is None:
            return 0
        orderer = ts.orderer
        if type(orderer) is not SequenceOrderer or orderer.buffered:
            return 0
        nxt = orderer.next_seq
        if nxt is None or first.sequence != nxt:
            return 0
        store = ts.store
        if ts.over_limit is not None or store.merge is not shallow_merge or self.ledger.watching:
            return 0
        j = i + 1
        expect = nxt + 1
        if (
            i == 0  # the whole frame, checked in C: one topic's next events (the usual case)
            and set(map(type, msgs)) == _EVENTS
            and list(map(_SEQ, msgs)) == list(range(nxt, nxt + n))
            and list(map(_TOPIC, msgs)).count(topic) == n
        ):
            j = n
        while j < n:
            msg = msgs[j]
            if type(msg) is not Event or msg.sequence != expect or msg.topic != topic:
                break
            j += 1
            expect += 1
        m = j - i
        if m < 2:
            return 0
        run = msgs[i:j]
        fresh = dict.fromkeys(map(_ID, run), now)
        if len(fresh) != m or not self._seen.keys().isdisjoint(fresh):
            seen = self._seen  # the run stops before the first id seen (or repeated)
            fresh = {}
            for ev in run:
                if ev.id in seen or ev.id in fresh:
                    break
                fresh[ev.id] = now
            m = len(fresh)
            if m < 2:
                return -1
            j = i + m
            run = run[:m]
        if store not in self._charged:
            charge = self._charge()
            if store.due(charge):
                return 0  # a measure is due: the per-event path decides (and freezes)
            self._charged.add(store)
            store.charge(charge)
        # codes: replayed up to (and including) the event that catches the replay up
        until = ts.replay_until
        replayed = 0 if until is None else min(m, max(0, until - nxt) + 1)
        hooked = self.on_apply is not None
        done = m
        try:
            if not hooked:
                store.apply_run(run)
            else:
                done = 0
                apply = store.apply
                for ev in run:
                    apply(ev.entity_id, ev.type, ev.payload, ev.sequence, 0)
                    done += 1
                    ts.last_token = ev.replay_token
                    ts.last_event_at = now
                    ts.applied += 1
                    outcome = _APPLIED_OUTCOME
                    if done <= replayed:
                        outcome = Outcome.REPLAYED
                        if done == replayed and until is not None and ev.sequence >= until:
                            ts.replay_until = None
                            ts.status = "live"
                    hook = self.on_apply  # a callback may remove the hook
                    if hook is not None:
                        hook(ts, ev, outcome)
        finally:
            if done:
                self._run_done(ts, run, done, m, replayed, fresh, now, share, hooked)
        return j

    def _run_done(
        self,
        ts: TopicState,
        run: list[Any],
        done: int,
        m: int,
        replayed: int,
        fresh: dict[str, float],
        now: float,
        share: int,
        hooked: bool,
    ) -> None:
        """The bookkeeping of the first ``done`` events of a run (all ``m`` of them,
        unless an ``on_apply`` hook raised)."""
        if done < m:
            run = run[:done]
            fresh = dict.fromkeys([ev.id for ev in run], now)
        last = run[-1]
        seq = last.sequence
        ts.orderer.next_seq = seq + 1  # type: ignore[attr-defined]
        self.deduper.add_new(fresh, now)
        ts.last_token = last.replay_token
        ts.last_event_at = now
        if not hooked:
            ts.applied += done
            until = ts.replay_until
            if replayed and until is not None and run[replayed - 1].sequence >= until:
                ts.replay_until = None
                ts.status = "live"
        if replayed >= done:
            codes: int | list[int] = _REPLAYED
        elif replayed:
            codes = [_REPLAYED] * replayed + [_APPLIED] * (done - replayed)
        else:
            codes = _APPLIED
        append_many = self._append_many
        if append_many is None:
            append = self._append
            for k, ev in enumerate(run):
                append(
                    now, ev.occurred_at.timestamp(), ev.topic, ev.type, ev.id, ev.sequence,
                    ev.entity_id, codes if isinstance(codes, int) else codes[k], self.transport,
                    self.attempt, share,
                )  # fmt: skip
            return
        append_many(
            done, now, list(map(_TIMESTAMP, map(_OCCURRED, run))), ts.name,
            list(map(_TYPE, run)), list(fresh), list(map(_SEQ, run)),
            list(map(_ENTITY, run)), codes, self.transport, self.attempt, share,
        )  # fmt: skip
