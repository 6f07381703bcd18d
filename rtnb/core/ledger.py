"""The mutation ledger: optimistic mutations from creation to resolution.

A mutation is created ``pending`` (or ``queued`` while the connection is
degraded, or ``refused`` at once under the ``reject`` policy) and ends in
exactly one of:

* ``confirmed`` — an event whose payload echoes its ``clientMutationId``;
* ``rejected`` — the server answered ``mutation_rejected`` (code, message kept);
* ``timed_out`` — no answer before its deadline; the overlay rolls back;
* ``cancelled`` — the connection was closed before an answer came (the
  server may or may not have applied it; the overlay rolls back, and no
  ``wait()`` is left hanging).

A confirmation that arrives after the timeout is still reconciled: the
mutation becomes ``late_confirmation`` (its effect is in server state now,
since the confirming event was applied). Resolved ids are remembered in a
bounded FIFO so late answers can be recognised without unbounded memory.

Pure: ``now`` is an input; the driver sends frames and applies overlay
changes from what these methods return.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ..protocol.errors import LocalProtocolError

MutationStatus = Literal[
    "queued",
    "pending",
    "confirmed",
    "rejected",
    "timed_out",
    "late_confirmation",
    "refused",
    "cancelled",
]
OnDegraded = Literal["queue", "reject"]

#: Seconds a mutation waits for confirmation before it rolls back: 10.
DEFAULT_MUTATION_TIMEOUT: Final = 10.0
#: Resolved mutations remembered for late answers: 10,000.
RESOLVED_MEMORY: Final = 10_000
#: Mutations waiting for an answer (pending or queued) at once: 10,000. Past it
#: a new mutation is ``refused`` at once (error code ``too_many_pending``).
MAX_OPEN_MUTATIONS: Final = 10_000

FINAL: Final = frozenset(
    {"confirmed", "rejected", "timed_out", "late_confirmation", "refused", "cancelled"}
)


@dataclass(slots=True)
class MutationRecord:
    client_mutation_id: str
    topic: str
    entity_id: str
    patch: dict[str, Any]
    created_at: float
    deadline: float
    status: MutationStatus = "pending"
    while_degraded: bool = False
    resolved_at: float | None = None
    error_code: str | None = None
    error: str | None = None
    sent_at: float | None = None
    history: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.created_at) * 1000.0

    @property
    def done(self) -> bool:
        return self.status in FINAL


class MutationLedger:
    """Tracks every optimistic mutation of a connection."""

    def __init__(
        self, *, on_degraded: OnDegraded = "queue", max_open: int = MAX_OPEN_MUTATIONS
    ) -> None:
        if on_degraded not in ("queue", "reject"):
            raise ValueError(f"on_degraded must be 'queue' or 'reject', got {on_degraded!r}")
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.on_degraded: OnDegraded = on_degraded
        self.max_open = max_open
        self._open: dict[str, MutationRecord] = {}
        self._resolved: OrderedDict[str, MutationRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def open_resolutions(self) -> ResolutionCursor:
        """A cursor over the mutations resolved from now on (see :class:`ResolutionCursor`)."""
        return ResolutionCursor(self)

    @property
    def watching(self) -> bool:
        """True while a confirmation could still matter (open or recently resolved)."""
        return bool(self._open) or bool(self._resolved)

    def get(self, client_mutation_id: str) -> MutationRecord | None:
        return self._open.get(client_mutation_id) or self._resolved.get(client_mutation_id)

    def create(
        self,
        client_mutation_id: str,
        topic: str,
        entity_id: str,
        patch: dict[str, Any],
        *,
        now: float,
        timeout: float = DEFAULT_MUTATION_TIMEOUT,
        degraded: bool = False,
    ) -> MutationRecord:
        """Register a new mutation. Its status says what the driver must do:

        ``pending`` → send it now and show the overlay; ``queued`` → show the
        overlay, send when healthy (:meth:`take_queued`); ``refused`` → do
        nothing, it is already final.
        """
        if client_mutation_id in self._open or client_mutation_id in self._resolved:
            raise LocalProtocolError(f"clientMutationId {client_mutation_id!r} is already in use")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        rec = MutationRecord(
            client_mutation_id,
            topic,
            entity_id,
            dict(patch),
            now,
            now + timeout,
            while_degraded=degraded,
        )
        if degraded and self.on_degraded == "reject":
            rec.status = "refused"
            rec.error_code = "degraded"
            rec.error = "the connection is degraded and on_degraded='reject'; retry when live"
            rec.resolved_at = now
            self._remember(rec)
            return rec
        if len(self._open) >= self.max_open:
            rec.status = "refused"
            rec.error_code = "too_many_pending"
            rec.error = (
                f"{len(self._open):,} mutations are already waiting for the server "
                f"(max_open_mutations={self.max_open:,}); wait for some to resolve and retry"
            )
            rec.resolved_at = now
            self._remember(rec)
            return rec
        if degraded:
            rec.status = "queued"
        else:
            rec.sent_at = now
        self._open[client_mutation_id] = rec
        return rec

    def take_queued(self, now: float) -> list[MutationRecord]:
        """Mutations to (re)send now that a connection is healthy again.

        Queued ones are sent for the first time; pending ones were sent on a
        connection that has since been lost, so the frame may never have
        arrived — they are sent again. The server is idempotent by
        ``clientMutationId``, so a second copy never makes a second event.
        """
        out = [r for r in self._open.values() if r.status in ("queued", "pending")]
        for r in out:
            if r.status == "pending":
                r.history.append(f"re-sent at {now:.3f} after a reconnect")
            r.status = "pending"
            r.sent_at = now
        return out

    def confirm(self, client_mutation_id: str, now: float) -> MutationRecord | None:
        """An event echoed the id. Returns the record (pending→confirmed, timed_out→late)."""
        rec = self._open.pop(client_mutation_id, None)
        if rec is not None:
            rec.status = "confirmed"
            rec.resolved_at = now
            self._remember(rec)
            return rec
        rec = self._resolved.get(client_mutation_id)
        if rec is not None and rec.status == "timed_out":
            rec.status = "late_confirmation"
            rec.history.append(f"confirmed late at {now:.3f}")
            return rec
        return None

    def reject(
        self, client_mutation_id: str, code: str, message: str, now: float
    ) -> MutationRecord | None:
        rec = self._open.pop(client_mutation_id, None)
        if rec is None:
            return None
        rec.status = "rejected"
        rec.error_code = code
        rec.error = message
        rec.resolved_at = now
        self._remember(rec)
        return rec

    def expire(self, now: float) -> list[MutationRecord]:
        """Mutations whose deadline passed: ``timed_out`` (the driver rolls back)."""
        out = [r for r in self._open.values() if r.deadline <= now]
        for r in out:
            del self._open[r.client_mutation_id]
            r.status = "timed_out"
            r.resolved_at = now
            r.error_code = "timed_out"
            r.error = f"no confirmation within {r.deadline - r.created_at:g} s"
            self._remember(r)
        return out

    def cancel_all(self, now: float, reason: str) -> list[MutationRecord]:
        """The connection closed: every open mutation is ``cancelled`` (the driver rolls back).

        A confirmation arriving later finds it resolved; a cancelled mutation is
        not re-sent by anyone, so its effect on the server is unknown — the
        error says so.
        """
        out = list(self._open.values())
        self._open.clear()
        for r in out:
            was_sent = r.status == "pending"
            r.status = "cancelled"
            r.resolved_at = now
            r.error_code = "cancelled"
            r.error = f"{reason} before the server answered" + (
                " (it was sent: the server may have applied it)" if was_sent else " (never sent)"
            )
            self._remember(r)
        return out

    def next_deadline(self) -> float | None:
        return min((r.deadline for r in self._open.values()), default=None)

    def _remember(self, rec: MutationRecord) -> None:
        self._resolved[rec.client_mutation_id] = rec
        while len(self._resolved) > RESOLVED_MEMORY:
            self._resolved.popitem(last=False)


class ResolutionCursor:
    """Mutations resolved since the last :meth:`take`, oldest first (runtime thread).

    Reads the ledger's memory of resolved mutations, which keeps them in
    resolution order and forgets the oldest first, from the newest back to
    the last one already seen: O(new resolutions) per call.
    """

    def __init__(self, ledger: MutationLedger) -> None:
        self._resolved = ledger._resolved
        self._last: str | None = next(reversed(self._resolved), None)

    def take(self) -> list[MutationRecord]:
        resolved = self._resolved
        if not resolved:
            return []
        new: list[MutationRecord] = []
        for cmid in reversed(resolved):
            if cmid == self._last:
                break
            new.append(resolved[cmid])
        self._last = next(reversed(resolved))
        new.reverse()
        return new
