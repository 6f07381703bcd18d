"""Mutations: validation, domain rules, idempotency by ``clientMutationId``.

A mutation either appends one event whose payload is the patch plus the
``clientMutationId`` (that event is the client's confirmation, delivered like
any other), or is answered with ``mutation_rejected {code, message}``:

==========================  =====================================================
``forbidden``               viewers cannot mutate; the topic needs a higher role
``unknown_topic``           no such topic
``not_found``               the entity does not exist (mutations never create)
``invalid_patch``           not a non-empty object of fields, too large, or a
                            field/value the topic does not allow
``invalid_transition``      a domain rule, e.g. only an admin re-opens a
                            resolved incident
``read_only``               the topic is written by its producer only (prices)
``idempotency_conflict``    the ``clientMutationId`` was used for another patch
``too_large``               the entity's new state (or the event) would exceed the
                            frame limit clients accept
``unavailable``             the store failed; nothing is being acknowledged
==========================  =====================================================

The confirming event is acknowledged (``POST /mutate`` answers, WebSocket
subscribers receive it) only once it is committed — durable with a persistent
store; see ``hub.py``.

Idempotency: the first *applied* mutation of a ``clientMutationId`` (per
tenant) is remembered, and the same mutation again is answered with that same
event instead of a new one. A rejected mutation is not remembered, so a retry
is judged afresh.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from ..core.merge import CLIENT_MUTATION_ID
from ..protocol.frames import Event, Mutate, MutationRejected
from .auth import Identity
from .hub import Hub, StorageFailed, TopicError
from .topiclog import TooLarge

__all__ = ["IDEMPOTENCY_LIMIT", "MAX_PATCH_BYTES", "MutationOutcome", "Mutations", "Rejected"]

#: Remembered ``clientMutationId``s (oldest forgotten first).
IDEMPOTENCY_LIMIT: Final = 100_000
#: Largest accepted patch, encoded as JSON.
MAX_PATCH_BYTES: Final = 64 * 1024

INCIDENT_STATUSES: Final = ("open", "ack", "resolved")
SEVERITIES: Final = ("low", "medium", "high", "critical")
VEHICLE_STATUSES: Final = ("moving", "idle", "charging", "maintenance", "offline")


class Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclasses.dataclass(frozen=True, slots=True)
class MutationOutcome:
    """The answer to one mutation: the confirming event, or the rejection.

    A duplicate of a mutation applied through another gateway may have no event
    yet (not visible here yet): WebSocket clients get it on their subscription.
    """

    event: Event | None = None
    rejected: MutationRejected | None = None
    duplicate: bool = False


Rule = Callable[[Identity, Mapping[str, Any], Mapping[str, Any]], str]


def _incident_rule(who: Identity, state: Mapping[str, Any], patch: Mapping[str, Any]) -> str:
    allowed = {"status", "severity", "assignee", "note", "title"}
    _only(patch, allowed, "incidents")
    status = patch.get("status")
    if status is not None:
        if status not in INCIDENT_STATUSES:
            raise Rejected("invalid_patch", f"status must be one of {INCIDENT_STATUSES}")
        if state.get("status") == "resolved" and status != "resolved" and not who.at_least("admin"):
            raise Rejected(
                "invalid_transition", "a resolved incident can only be re-opened by an admin"
            )
    if "severity" in patch and patch["severity"] not in SEVERITIES:
        raise Rejected("invalid_patch", f"severity must be one of {SEVERITIES}")
    for text_field in ("assignee", "note", "title"):
        if text_field in patch and not isinstance(patch[text_field], str | None):
            raise Rejected("invalid_patch", f"{text_field} must be a string or null")
    return "incident.updated"


def _vehicle_rule(who: Identity, state: Mapping[str, Any], patch: Mapping[str, Any]) -> str:
    _only(patch, {"status", "driver", "note"}, "fleet")
    if "status" in patch and patch["status"] not in VEHICLE_STATUSES:
        raise Rejected("invalid_patch", f"status must be one of {VEHICLE_STATUSES}")
    for text_field in ("driver", "note"):
        if text_field in patch and not isinstance(patch[text_field], str | None):
            raise Rejected("invalid_patch", f"{text_field} must be a string or null")
    return "vehicle.updated"


def _read_only(who: Identity, state: Mapping[str, Any], patch: Mapping[str, Any]) -> str:
    raise Rejected(
        "read_only", "prices are written by the market feed only; they cannot be mutated"
    )


def _only(patch: Mapping[str, Any], allowed: set[str], topic: str) -> None:
    extra = sorted(set(patch) - allowed)
    if extra:
        raise Rejected(
            "invalid_patch",
            f"{topic} does not allow field(s) {', '.join(map(repr, extra))}; "
            f"allowed: {', '.join(sorted(allowed))}",
        )


#: Domain rules by topic name; other topics accept any patch as "<topic>.updated".
RULES: Final[dict[str, Rule]] = {
    "incidents": _incident_rule,
    "fleet": _vehicle_rule,
    "prices": _read_only,
}


def _fingerprint(mutation: Mutate) -> bytes:
    return msgspec.json.encode((mutation.topic, mutation.entity_id, mutation.patch), order="sorted")


class Mutations:
    """Validates and applies mutations; one per server handle (survives restarts)."""

    def __init__(self, limit: int = IDEMPOTENCY_LIMIT) -> None:
        self._limit = limit
        self._seen: collections.OrderedDict[tuple[str, str], tuple[bytes, Event]] = (
            collections.OrderedDict()
        )

    def apply(
        self,
        hub: Hub,
        who: Identity,
        mutation: Mutate,
        claimed: tuple[bytes | None] | None = None,
    ) -> MutationOutcome:
        """Validate and apply; ``claimed``: the Redis claim already made (:meth:`apply_shared`)."""
        cmid = mutation.client_mutation_id
        key = (who.tenant, cmid)
        fingerprint = _fingerprint(mutation)
        remembered = self._remembered(key, fingerprint)
        if remembered is not None:
            return remembered
        bridge = hub.bridge
        if bridge is not None:  # gateways sharing Redis: the id is claimed there (SET NX EX)
            if claimed is None:
                try:
                    claimed = (bridge.claim_mutation(who.tenant, cmid, fingerprint),)
                except Exception as exc:
                    return self._unreachable(cmid, exc)
            if claimed[0] is not None:
                if claimed[0] != fingerprint:
                    return self._reject(
                        cmid,
                        "idempotency_conflict",
                        "this clientMutationId was already used for a different mutation; "
                        "use a fresh id per mutation",
                    )
                # Applied through another gateway: answer with its event once visible here.
                found = bridge.find_mutation_event(who.tenant, mutation.topic, cmid)
                return MutationOutcome(event=found, duplicate=True)
        try:
            event = self._apply(hub, who, mutation)
        except Rejected as exc:
            if bridge is not None:
                bridge.release_mutation(who.tenant, cmid)  # a rejection is not remembered
            return self._reject(cmid, exc.code, exc.message)
        self._seen[key] = (fingerprint, event)
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return MutationOutcome(event=event)

    async def apply_shared(self, hub: Hub, who: Identity, mutation: Mutate) -> MutationOutcome:
        """:meth:`apply`, with the Redis claim awaited on the loop (never blocking it)."""
        bridge = hub.bridge
        if bridge is None:
            return self.apply(hub, who, mutation)
        cmid = mutation.client_mutation_id
        fingerprint = _fingerprint(mutation)
        remembered = self._remembered((who.tenant, cmid), fingerprint)
        if remembered is not None:
            return remembered
        if who.at_least("operator"):  # load a topic new to this gateway without blocking
            await hub.preload(who, mutation.topic)  # (if Redis fails, check says unavailable)
        try:
            claimed = await bridge.claim(who.tenant, cmid, fingerprint)
        except Exception as exc:
            return self._unreachable(cmid, exc)
        return self.apply(hub, who, mutation, (claimed,))

    def _remembered(self, key: tuple[str, str], fingerprint: bytes) -> MutationOutcome | None:
        prior = self._seen.get(key)
        if prior is None:
            return None
        if prior[0] != fingerprint:
            return self._reject(
                key[1],
                "idempotency_conflict",
                "this clientMutationId was already used for a different mutation; "
                "use a fresh id per mutation",
            )
        return MutationOutcome(event=prior[1], duplicate=True)

    def _unreachable(self, cmid: str, exc: Exception) -> MutationOutcome:
        return self._reject(
            cmid, "unavailable", f"the Redis store is unreachable ({type(exc).__name__})"
        )

    @staticmethod
    def _reject(cmid: str, code: str, message: str) -> MutationOutcome:
        return MutationOutcome(
            rejected=MutationRejected(client_mutation_id=cmid, code=code, message=message)
        )

    def _apply(self, hub: Hub, who: Identity, mutation: Mutate) -> Event:
        topic, entity_id, patch = mutation.topic, mutation.entity_id, mutation.patch
        if not who.at_least("operator"):
            raise Rejected(
                "forbidden",
                f"role {who.role!r} cannot mutate; an operator or admin token is needed",
            )
        try:
            topic_log = hub.check(who, topic)
        except TopicError as exc:
            raise Rejected(exc.code, exc.message) from None
        state = topic_log.current(entity_id)  # including events not yet committed
        if state is None:
            raise Rejected(
                "not_found", f"{topic} has no entity {entity_id!r}; mutations only change entities"
            )
        _check_patch(patch)
        rule = RULES.get(topic)
        event_type = rule(who, state, patch) if rule else f"{topic}.updated"
        payload = {**patch, CLIENT_MUTATION_ID: mutation.client_mutation_id}
        try:
            return hub.publish(who.tenant, topic, event_type, payload, entity_id)
        except TooLarge as exc:
            raise Rejected("too_large", str(exc)) from None
        except StorageFailed as exc:
            raise Rejected("unavailable", str(exc)) from None


def _check_patch(patch: Mapping[str, Any]) -> None:
    if not patch:
        raise Rejected("invalid_patch", "the patch is empty; send at least one field to change")
    if CLIENT_MUTATION_ID in patch:
        raise Rejected(
            "invalid_patch", f"{CLIENT_MUTATION_ID!r} is reserved; send it beside the patch"
        )
    for name, value in patch.items():
        if not name:
            raise Rejected("invalid_patch", "field names must not be empty")
        if isinstance(value, float) and not math.isfinite(value):
            raise Rejected("invalid_patch", f"field {name!r}: numbers must be finite")
    if len(msgspec.json.encode(patch)) > MAX_PATCH_BYTES:
        raise Rejected("invalid_patch", f"the patch exceeds {MAX_PATCH_BYTES} bytes as JSON")
