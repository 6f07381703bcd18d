"""Per-topic entity state with an optimistic overlay.

``TopicStore`` holds the *server* state of each entity (what confirmed events
produced) and, beside it, the patches of pending optimistic mutations. The
view a user sees is ``server state + pending patches`` in creation order,
each row flagged pending while any of its mutations is unresolved.

Entity dicts are copy-on-write: applying an event builds a new dict and
swaps it in, never mutating one a reader may hold. That lets the notebook
thread read ``entities`` while the runtime thread applies events.

Consumers such as widgets follow changes through :class:`ChangeSet` cursors:
every apply adds the entity id to each open cursor, and a consumer takes
the accumulated set when it is ready to render (at most ``fps`` times a
second), so a burst of 10,000 events on 50 entities costs one 50-row diff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .merge import CLIENT_MUTATION_ID, DELETED_SUFFIX, MergeFn, shallow_merge

__all__ = ["PENDING_FIELD", "ChangeSet", "TopicStore"]

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
        "_cursors",
        "_custom_merge",
        "entities",
        "merge",
        "pending",
        "sequences",
        "topic",
    )

    def __init__(self, topic: str, merge: MergeFn | None = None) -> None:
        self.topic = topic
        self.merge: MergeFn = merge or shallow_merge
        self._custom_merge = merge is not None
        self.entities: dict[str, dict[str, Any]] = {}
        self.sequences: dict[str, int] = {}
        #: entity_id -> {client_mutation_id: patch}, in creation order
        self.pending: dict[str, dict[str, dict[str, Any]]] = {}
        self._cursors: list[ChangeSet] = []

    # -- server state -----------------------------------------------------

    def apply(self, entity_id: str, event_type: str, payload: Mapping[str, Any], seq: int) -> None:
        """Apply one confirmed event (the hot path: one new dict, two stores)."""
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
        if self._cursors:
            for c in self._cursors:
                c.changed.add(entity_id)

    def replace(self, entities: Iterable[tuple[str, dict[str, Any], int]]) -> None:
        """Replace the whole state (a snapshot): ``(entity_id, state, sequence)`` triples."""
        ents: dict[str, dict[str, Any]] = {}
        seqs: dict[str, int] = {}
        for eid, state, seq in entities:
            ents[eid] = dict(state)
            seqs[eid] = seq
        self.entities = ents
        self.sequences = seqs
        for c in self._cursors:
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
        self._cursors.append(cs)
        return cs

    def close_changes(self, cs: ChangeSet) -> None:
        if cs in self._cursors:
            self._cursors.remove(cs)

    def _touch(self, entity_id: str) -> None:
        for c in self._cursors:
            c.changed.add(entity_id)
