"""The pipeline's inputs other than frames, mixed into :class:`~rtnb.core.pipeline.Pipeline`.

Drivers (the live session, the replay player) never set the pipeline's attributes
or touch its topic states and stores: they call these methods and route what comes
back (python-websockets' ``receive_data()`` -> ``events_received()``, h11's "everything
that affects the state machine must live here"). The frames themselves go in through
:meth:`Pipeline.feed`; everything else that changes the pipeline is here:

* the hook called per applied event (:meth:`set_on_apply`), installed by the driver
  only while some topic has an ``on_event`` callback;
* what the frames left for the driver: a fault (:meth:`take_fault`) and the
  mutations they resolved (:meth:`take_resolved`);
* mutations asked for, timed out or cancelled (:meth:`mutate`,
  :meth:`expire_mutations`, :meth:`cancel_mutations`): the ledger records them and
  the optimistic overlays of the topic stores follow;
* a replay's topic states, which live as long as the replay (handles hold them)
  across resets and checkpoint restores (:meth:`new_topic_state`,
  :meth:`reset_topic`, :meth:`attach_topic`, :meth:`adopt_topics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .ledger import MutationLedger, MutationRecord
from .merge import MergeFn
from .orderer import Orderer, make_orderer
from .status import Outcome
from .store import TopicStore

if TYPE_CHECKING:
    from ..protocol.frames import Event
    from .pipeline import TopicState


class PipelineInputs:
    """The pipeline's input methods (see the module doc); :class:`Pipeline` sets the
    attributes declared here."""

    topics: dict[str, TopicState]
    ledger: MutationLedger
    fault: str | None
    resolved: list[MutationRecord]
    on_apply: Callable[[TopicState, Event, Outcome], None] | None
    max_topic_bytes: int
    max_gap_buffer: int
    max_gap_buffer_bytes: int

    def set_on_apply(self, hook: Callable[[TopicState, Event, Outcome], None] | None) -> None:
        """Call ``hook(topic_state, event, outcome)`` for every applied event (None: none).

        The driver installs it only while some topic has an ``on_event`` callback, so
        a stream nobody listens to pays no call per event."""
        self.on_apply = hook

    def take_fault(self) -> str | None:
        """Why the stream broke a bound it cannot recover from in place (a snapshot too
        large), once: the driver resets the connection. None if it did not."""
        fault, self.fault = self.fault, None
        return fault

    def take_resolved(self) -> list[MutationRecord]:
        """The mutations resolved by frames since the last call (the driver settles them)."""
        resolved, self.resolved = self.resolved, []
        return resolved

    def mutate(
        self,
        client_mutation_id: str,
        topic: str,
        entity_id: str,
        patch: dict[str, Any],
        *,
        now: float,
        timeout: float,
        degraded: bool,
    ) -> MutationRecord:
        """A mutation asked for: recorded in the ledger and, unless refused at once, its
        patch laid over the entity optimistically. The record says what to do: send it
        (``pending``), hold it (``queued``) or nothing (``refused``)."""
        ts = self.topics.get(topic)
        if ts is None:
            raise ValueError(f"not subscribed to {topic!r}; subscribe before mutating")
        rec = self.ledger.create(
            client_mutation_id, topic, entity_id, patch, now=now, timeout=timeout, degraded=degraded
        )
        if rec.status != "refused":
            ts.store.add_pending(entity_id, client_mutation_id, patch)
        return rec

    def expire_mutations(self, now: float) -> list[MutationRecord]:
        """Mutations unconfirmed past their timeout: resolved, their patches dropped."""
        return self._drop_overlays(self.ledger.expire(now))

    def cancel_mutations(self, now: float, reason: str) -> list[MutationRecord]:
        """Every open mutation cancelled (the connection closed), patches dropped."""
        return self._drop_overlays(self.ledger.cancel_all(now, reason))

    def _drop_overlays(self, records: Iterable[MutationRecord]) -> list[MutationRecord]:
        out = []
        for rec in records:
            ts = self.topics.get(rec.topic)
            if ts is not None:
                ts.store.remove_pending(rec.entity_id, rec.client_mutation_id)
            out.append(rec)
        return out

    def new_topic_state(
        self, name: str, ordering: str, *, merge: MergeFn | None = None, gap_timeout: float
    ) -> TopicState:
        """A topic's state with this pipeline's limits, not subscribed yet (a replay keeps
        one per recorded topic for its whole life: see :meth:`attach_topic`)."""
        from .pipeline import TopicState  # the pipeline module mixes this class in

        return TopicState(
            name,
            self._orderer(name, ordering, gap_timeout),
            TopicStore(name, merge, self.max_topic_bytes),
        )

    def reset_topic(self, state: TopicState, ordering: str, *, gap_timeout: float) -> None:
        """Make ``state`` what a fresh subscription's is, without subscribing it (the
        object stays: handles and change cursors that hold it stay valid)."""
        _clear(state, self._orderer(state.name, ordering, gap_timeout))

    def attach_topic(self, state: TopicState, ordering: str, *, gap_timeout: float) -> None:
        """Subscribe ``state`` afresh: cleared (as :meth:`reset_topic`) and processed from
        now on, replacing any state of that name (the object stays the caller's)."""
        self.reset_topic(state, ordering, gap_timeout=gap_timeout)
        self.topics[state.name] = state

    def adopt_topics(self, live: Mapping[str, TopicState]) -> list[TopicState]:
        """This pipeline is a copy restored from a checkpoint: each of its topics moves
        into the ``live`` object of the same name (its state becomes the saved one), so
        what holds those stays valid. Returns the ``live`` states it has no topic for (not
        subscribed then: the caller resets them)."""
        absent = []
        for name, state in live.items():
            saved = self.topics.get(name)
            if saved is None:
                absent.append(state)
                continue
            _restore(state, saved)
            self.topics[name] = state
        return absent

    def _orderer(self, name: str, ordering: str, gap_timeout: float) -> Orderer:
        return make_orderer(
            name,
            ordering,
            gap_timeout=gap_timeout,
            max_buffer=self.max_gap_buffer,
            max_buffer_bytes=self.max_gap_buffer_bytes,
        )


def _clear(state: TopicState, orderer: Orderer) -> None:
    """``state`` becomes what a fresh subscription's is, ordered by ``orderer``."""
    state.orderer = orderer
    state.store.replace(())
    state.store.pending.clear()
    state.status = "pending"
    state.error = state.error_code = None
    state.over_limit = None
    state.confirmed = False
    state.last_token = state.last_event_at = state.replay_until = None
    state.unavailable = False
    state.partial, state.partial_bytes = {}, 0
    state.applied = state.gaps = state.unrecoverable = 0


def _restore(state: TopicState, saved: TopicState) -> None:
    """``state`` takes ``saved``'s contents (a checkpoint's copy of the same topic),
    keeping its own store object."""
    for slot in type(state).__slots__:
        if slot not in ("name", "store"):
            setattr(state, slot, getattr(saved, slot))
    store = saved.store
    state.store.replace(
        (eid, st, store.sequences.get(eid, 0)) for eid, st in store.entities.items()
    )
    state.store.pending = store.pending
