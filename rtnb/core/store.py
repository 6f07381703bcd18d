"""Per-topic entity state with an optimistic overlay.

``TopicStore`` holds the *server* state of each entity (what confirmed events
produced) and, beside it, the patches of pending optimistic mutations. The
view a user sees is ``server state + pending patches`` in creation order,
each row flagged pending while any of its mutations is unresolved.

Entity dicts are copy-on-write: applying an event builds a new dict and
swaps it in, never mutating one a reader may hold. That lets the notebook
thread read ``entities`` while the runtime thread applies events.

Size: the store keeps ``nbytes``, an upper bound of its state's size in JSON
bytes, for O(1) per event (each event adds its frame's size; a shallow merge
never grows a state by more than its payload). A ``batch`` frame is charged
once, whole, before the first of its events is applied (:meth:`TopicStore.charge`;
the frame's size bounds the sum of its payloads), and its events then apply
with no size work; the charge is kept across a measure until the frame is done. When the bound doubles since it
was last measured, or passes ``max_bytes``, the state is measured exactly (one
``msgspec`` encode, O(state), paid at most once per state-size of events
received). Over ``max_bytes`` measured exactly, :attr:`TopicStore.over` says
so; the pipeline then stops applying to it (see ``Pipeline``) -- the cap is a
decision, never a silent truncation.

Consumers such as widgets follow changes through :class:`ChangeSet` cursors:
every apply adds the entity id to each open cursor, and a consumer takes
the accumulated set when it is ready to render (at most ``fps`` times a
second), so a burst of 10,000 events on 50 entities costs one 50-row diff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Final

import msgspec

from .merge import CLIENT_MUTATION_ID, DELETED_SUFFIX, MergeFn, shallow_merge

#: Bytes of state (its JSON size) one topic may hold: 128 MiB -- 25x the
#: 60,000-entity topic of the flight-recorder benchmark; in Python objects
#: that is roughly 0.5-1 GB, the most a notebook should hold per topic.
#: ``rtnb.Limits(max_topic_bytes=)``.
DEFAULT_MAX_TOPIC_BYTES: Final = 128 * 1024 * 1024
#: Slack before a re-measure (bytes): small states are not re-measured every few events.
_MEASURE_SLACK: Final = 64 * 1024
_encode = msgspec.json.encode
_TYPE: Final = attrgetter("type")

#: Name of the flag added to views of entities with pending mutations.
PENDING_FIELD = "_pending"


class ChangeSet:
    """Entity ids changed since the consumer last took them."""

    __slots__ = ("changed", "reset")

    def __init__(self) -> None:
        self.changed: set[str] = set()
        #: True when the whole state was replaced (snapshot): re-read everything.
        self.reset = True

    def take(self) -> tuple[bool, set[str]]:
        reset, changed = self.reset, self.changed
        self.reset, self.changed = False, set()
        return reset, changed


class TopicStore:
    """Entities of one topic: server state, per-entity sequence, optimistic overlay."""

    __slots__ = (
        "_custom_merge",
        "cursors",
        "entities",
        "max_bytes",
        "measure_at",
        "merge",
        "nbytes",
        "over",
        "pending",
        "prepaid",
        "sequences",
        "topic",
    )

    def __init__(
        self, topic: str, merge: MergeFn | None = None, max_bytes: int = DEFAULT_MAX_TOPIC_BYTES
    ) -> None:
        self.topic = topic
        #: the cap on :attr:`nbytes` (measured exactly before it is declared passed)
        self.max_bytes = max_bytes
        #: an upper bound of the state's size in JSON bytes (exact after a measure)
        self.nbytes = 2
        #: True once the state, measured exactly, is over ``max_bytes``
        self.over = False
        self.measure_at = min(_MEASURE_SLACK, max_bytes)
        #: bytes charged for a frame still being applied (kept in the bound across a measure)
        self.prepaid = 0
        self.merge: MergeFn = merge or shallow_merge
        self._custom_merge = merge is not None
        self.entities: dict[str, dict[str, Any]] = {}
        self.sequences: dict[str, int] = {}
        #: entity_id -> {client_mutation_id: patch}, in creation order
        self.pending: dict[str, dict[str, dict[str, Any]]] = {}
        self.cursors: list[ChangeSet] = []

    # -- server state -----------------------------------------------------

    def apply(
        self,
        entity_id: str,
        event_type: str,
        payload: Mapping[str, Any],
        seq: int,
        nbytes: int = -1,
    ) -> None:
        """Apply one confirmed event (the hot path: one new dict, two stores).

        ``nbytes``: the event frame's size, an upper bound of what the payload adds
        (-1: unknown, the payload is encoded to count it; 0: already paid by
        :meth:`charge`)."""
        ents = self.entities
        if self._custom_merge or event_type.endswith(DELETED_SUFFIX):
            new = self.merge(ents.get(entity_id), event_type, payload)
        else:
            cur = ents.get(entity_id)
            new = {**cur, **payload} if cur else dict(payload)
            if CLIENT_MUTATION_ID in payload:
                del new[CLIENT_MUTATION_ID]
        if new is None:
            ents.pop(entity_id, None)
            self.sequences.pop(entity_id, None)
        else:
            ents[entity_id] = new
            self.sequences[entity_id] = seq
        if self.cursors:
            for c in self.cursors:
                c.changed.add(entity_id)
        if nbytes:
            if nbytes < 0:  # "id":{payload},
                nbytes = self._size_of(payload) + len(_encode(entity_id)) + 2
            self.nbytes += nbytes
            if self.nbytes > self.measure_at:
                self.measure()

    def apply_run(self, events: Sequence[Any]) -> None:
        """Apply confirmed events already paid by :meth:`charge`, in order: what
        :meth:`apply` does for each with ``nbytes=0``, in one loop (the default merge
        only: a store with a custom merge applies one by one).

        ``events``: objects with ``entity_id``, ``type``, ``payload`` and ``sequence``."""
        ents = self.entities
        seqs = self.sequences
        get = ents.get
        deletes = any(t.endswith(DELETED_SUFFIX) for t in set(map(_TYPE, events)))
        for ev in events:
            eid = ev.entity_id
            payload = ev.payload
            if deletes and ev.type.endswith(DELETED_SUFFIX):
                ents.pop(eid, None)
                seqs.pop(eid, None)
                continue
            cur = get(eid)
            new = {**cur, **payload} if cur else dict(payload)
            if CLIENT_MUTATION_ID in payload:
                del new[CLIENT_MUTATION_ID]
            ents[eid] = new
            seqs[eid] = ev.sequence
        if self.cursors:
            ids = {ev.entity_id for ev in events}
            for c in self.cursors:
                c.changed.update(ids)

    def due(self, nbytes: int) -> bool:
        """Whether charging ``nbytes`` now would measure the state first."""
        return self.nbytes + nbytes > self.measure_at

    def charge(self, nbytes: int) -> None:
        """A frame of ``nbytes`` is about to be applied (its events with ``nbytes=0``):
        add it to the bound now, measuring first if the bound says it is due (then
        :attr:`over` tells whether the state was already over the cap). The charge
        stays in the bound across any measure until :attr:`prepaid` is reset to 0
        (the frame is done)."""
        if self.nbytes + nbytes > self.measure_at:
            self.measure()
        self.nbytes += nbytes
        self.prepaid += nbytes

    @staticmethod
    def _size_of(value: Any) -> int:
        try:
            return len(_encode(value))
        except (TypeError, msgspec.EncodeError):
            return len(repr(value))

    def measure(self) -> int:
        """Measure the state exactly (JSON bytes; O(state)), set :attr:`over`, and
        choose when to measure again: once the bound has doubled (or grown by 64 KiB),
        or passed the cap -- and past the cap not before another eighth of it was
        received, so a state just under the cap costs O(1) per byte received."""
        exact = self._size_of(self.entities)
        cap = self.max_bytes
        # a frame being applied keeps its charge: the rest of its events are not counted
        self.nbytes = bound = exact + self.prepaid
        self.over = exact > cap
        grown = max(2 * exact, exact + _MEASURE_SLACK)
        self.measure_at = max(min(grown, max(cap, exact + cap // 8)), bound)
        return exact

    def replace(self, entities: Iterable[tuple[str, dict[str, Any], int]]) -> None:
        """Replace the whole state (a snapshot): ``(entity_id, state, sequence)`` triples."""
        ents: dict[str, dict[str, Any]] = {}
        seqs: dict[str, int] = {}
        for eid, state, seq in entities:
            ents[eid] = dict(state)
            seqs[eid] = seq
        self.entities = ents
        self.sequences = seqs
        self.measure()
        for c in self.cursors:
            c.reset = True
            c.changed.clear()

    # -- optimistic overlay ---------------------------------------------------

    def add_pending(
        self, entity_id: str, client_mutation_id: str, patch: Mapping[str, Any]
    ) -> None:
        self.pending.setdefault(entity_id, {})[client_mutation_id] = dict(patch)
        self._touch(entity_id)

    def remove_pending(self, entity_id: str, client_mutation_id: str) -> bool:
        """Drop one pending patch (confirmed, rejected or timed out); True if it was there."""
        patches = self.pending.get(entity_id)
        if not patches or client_mutation_id not in patches:
            return False
        del patches[client_mutation_id]
        if not patches:
            del self.pending[entity_id]
        self._touch(entity_id)
        return True

    def view(self, entity_id: str) -> dict[str, Any] | None:
        """Server state plus pending patches; ``_pending`` is True while any is unresolved."""
        base = self.entities.get(entity_id)
        patches = self.pending.get(entity_id)
        if not patches:
            return base
        out = dict(base) if base else {}
        for patch in patches.values():
            out.update(patch)
        out[PENDING_FIELD] = True
        return out

    def views(self) -> dict[str, dict[str, Any]]:
        """Every entity's view (a new dict; entity dicts are shared, do not mutate)."""
        if not self.pending:
            return dict(self.entities)
        out = dict(self.entities)
        for eid in self.pending:
            v = self.view(eid)
            if v is not None:
                out[eid] = v
        return out

    # -- change cursors -------------------------------------------------------

    def open_changes(self) -> ChangeSet:
        cs = ChangeSet()
        self.cursors.append(cs)
        return cs

    def close_changes(self, cs: ChangeSet) -> None:
        if cs in self.cursors:
            self.cursors.remove(cs)

    def _touch(self, entity_id: str) -> None:
        for c in self.cursors:
            c.changed.add(entity_id)
