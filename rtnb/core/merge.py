"""Merge rules shared by the client store and the reference server.

The server derives ``truth`` from its log with exactly these functions, so a
client that applied every event once, in order, holds the same state.

* a ``type`` ending in ``.deleted`` removes the entity;
* otherwise the payload is shallow-merged into the entity's state;
* ``clientMutationId`` is routing metadata (it confirms an optimistic
  mutation), never entity state, so it is not merged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

DELETED_SUFFIX: Final = ".deleted"
CLIENT_MUTATION_ID: Final = "clientMutationId"

#: ``merge(current_state_or_None, event_type, payload) -> new_state_or_None``;
#: returning ``None`` deletes the entity. Must not mutate its arguments.
MergeFn = Callable[[Mapping[str, Any] | None, str, Mapping[str, Any]], dict[str, Any] | None]


def is_delete(event_type: str) -> bool:
    return event_type.endswith(DELETED_SUFFIX)


def shallow_merge(
    state: Mapping[str, Any] | None, event_type: str, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The default merge: delete on ``*.deleted``, else shallow-merge the payload."""
    if event_type.endswith(DELETED_SUFFIX):
        return None
    new = dict(state) if state else {}
    new.update(payload)
    if CLIENT_MUTATION_ID in new:
        del new[CLIENT_MUTATION_ID]
    return new


def apply_to(
    entities: dict[str, dict[str, Any]],
    entity_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    merge: MergeFn = shallow_merge,
) -> dict[str, Any] | None:
    """Apply one event to a ``{entity_id: state}`` map in place; return the new state."""
    new = merge(entities.get(entity_id), event_type, payload)
    if new is None:
        entities.pop(entity_id, None)
    else:
        entities[entity_id] = new
    return new
