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
``outcome_unknown``         (``POST /mutate``, 503) the store did not confirm the
                            write: it may be applied; retry with the same id
==========================  =====================================================

The confirming event is acknowledged (``POST /mutate`` answers, WebSocket
subscribers receive it) only once it is committed — durable with a persistent
store; see ``hub.py``.

Idempotency: a ``clientMutationId`` (per tenant) is an idempotency key
(``idempotency.py``): stored with its event in one atomic step, once committed it
answers the same mutation again with that same event instead of a new one, on
every gateway, for the idempotency window. A rejected mutation is not
remembered, so a retry is judged afresh; neither is one whose commit failed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from ..core.merge import CLIENT_MUTATION_ID
from ..protocol.errors import RtnbError
from ..protocol.frames import Event, Mutate, MutationRejected
from .auth import Identity
from .hub import Hub, StorageFailed, TopicError
from .idempotency import MUTATION_SCOPE, Applied, IdemKey, IdempotencyConflict, digest
from .topiclog import TooLarge

#: Largest accepted patch, encoded as JSON.
MAX_PATCH_BYTES: Final = 64 * 1024

INCIDENT_STATUSES: Final = ("open", "ack", "resolved")
SEVERITIES: Final = ("low", "medium", "high", "critical")
VEHICLE_STATUSES: Final = ("moving", "idle", "charging", "maintenance", "offline")


class Rejected(RtnbError):
    """A mutation refused: ``code`` is the wire error code of its ``mutation_rejected``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclasses.dataclass(frozen=True, slots=True)
class MutationOutcome:
    """The answer to one mutation: the confirming event, or the rejection.

    ``committed``: the event is already committed (a retry answered from its key);
    else the caller waits for the commit before acknowledging it.
    """

    event: Event | None = None
    rejected: MutationRejected | None = None
    duplicate: bool = False
    committed: bool = False


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


def _key(who: Identity, mutation: Mutate) -> IdemKey:
    """The mutation's idempotency key: its id per tenant, its digest (topic, entity, patch)."""
    content = digest(mutation.topic, mutation.entity_id, mutation.patch)
    return IdemKey.of((who.tenant, MUTATION_SCOPE), mutation.client_mutation_id, content)


class Mutations:
    """Validates and applies mutations; one per server handle.

    The ids already applied are the hub's idempotency keys (``Hub.recall``), shared
    with publishes, stored with their events and bounded in bytes.
    """

    def apply(
        self, hub: Hub, who: Identity, mutation: Mutate, prior: Applied | None = None
    ) -> MutationOutcome:
        """Validate and apply; ``prior``: what the shared store (Redis) holds for the id."""
        cmid = mutation.client_mutation_id
        if not who.at_least("operator"):
            return self._reject(
                cmid,
                "forbidden",
                f"role {who.role!r} cannot mutate; an operator or admin token is needed",
            )
        key = _key(who, mutation)
        payload = {**mutation.patch, CLIENT_MUTATION_ID: cmid}
        try:
            found = hub.keys.recall(key, mutation.topic, mutation.entity_id, payload, prior=prior)
        except IdempotencyConflict as exc:
            return self._reject(cmid, "idempotency_conflict", str(exc))
        if found is not None:
            return MutationOutcome(event=found[0], duplicate=True, committed=found[1])
        try:
            event = self._apply(hub, who, mutation, key)
        except Rejected as exc:
            return self._reject(cmid, exc.code, exc.message)
        return MutationOutcome(event=event)

    async def apply_shared(self, hub: Hub, who: Identity, mutation: Mutate) -> MutationOutcome:
        """:meth:`apply`, with what Redis holds for the id read first, on the loop.

        That read only answers retries early (before validating them against a state that
        may have moved on); the append script itself decides atomically whether the id is
        new — a claim is never made apart from its event.
        """
        bridge = hub.bridge
        if bridge is None or not who.at_least("operator"):
            return self.apply(hub, who, mutation)
        await hub.preload(who, mutation.topic)  # (if Redis fails, check says unavailable)
        key = _key(who, mutation)
        try:
            prior = await bridge.recall(key)
        except Exception as exc:
            return self._unreachable(mutation.client_mutation_id, exc)
        return self.apply(hub, who, mutation, prior)

    def _unreachable(self, cmid: str, exc: Exception) -> MutationOutcome:
        return self._reject(
            cmid, "unavailable", f"the Redis store is unreachable ({type(exc).__name__})"
        )

    @staticmethod
    def _reject(cmid: str, code: str, message: str) -> MutationOutcome:
        return MutationOutcome(
            rejected=MutationRejected(client_mutation_id=cmid, code=code, message=message)
        )

    def _apply(self, hub: Hub, who: Identity, mutation: Mutate, key: IdemKey) -> Event:
        topic, entity_id, patch = mutation.topic, mutation.entity_id, mutation.patch
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
            return hub.publish(who.tenant, topic, event_type, payload, entity_id, key=key)
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
