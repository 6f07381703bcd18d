"""``Mutation``: the user's handle on one optimistic change."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from ..core.ledger import MutationRecord
from ..protocol.errors import RtnbError, WaitTimeout
from ..protocol.frames import Mutate

if TYPE_CHECKING:
    from ..telemetry.log import EnvelopeLog


class MutationError(RtnbError):
    """Raised by ``Mutation.wait(raise_on_failure=True)`` for a rejected/timed-out change."""


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Mutation:
    """An optimistic mutation: ``status`` is pending → confirmed | rejected | timed_out.

    (Or ``queued`` first, while degraded; ``refused`` at once under
    ``on_degraded="reject"``; ``cancelled`` if the connection is closed first.)

    The change shows in ``topic.df`` (flagged ``_pending``) at once; it stays if
    the server confirms it and rolls back if the server rejects it or does not
    answer in time. A confirmation that arrives after the timeout is still
    reconciled (status ``late_confirmation``).
    """

    def __init__(self, record: MutationRecord) -> None:
        self._record = record
        self._done = threading.Event()
        self._waiters: list[asyncio.Future[None]] = []
        if record.done:
            self._done.set()

    # -- read-only view of the record ----------------------------------------------

    @property
    def client_mutation_id(self) -> str:
        return self._record.client_mutation_id

    @property
    def topic(self) -> str:
        return self._record.topic

    @property
    def entity_id(self) -> str:
        return self._record.entity_id

    @property
    def patch(self) -> dict[str, Any]:
        return dict(self._record.patch)

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def error(self) -> str | None:
        """Why it failed (the server's message, or the timeout), else None."""
        return self._record.error

    @property
    def error_code(self) -> str | None:
        return self._record.error_code

    @property
    def latency_ms(self) -> float | None:
        return self._record.latency_ms

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- waiting -------------------------------------------------------------------

    def wait(self, timeout: float | None = None, *, raise_on_failure: bool = False) -> Mutation:
        """Block until resolved (or ``timeout``); returns self for chaining.

        Raises :class:`rtnb.WaitTimeout` if still unresolved after ``timeout`` s and,
        with ``raise_on_failure``, :class:`rtnb.MutationError` if it did not go through.
        """
        if not self._done.wait(timeout):
            raise self._timed_out(timeout)
        return self._outcome(raise_on_failure)

    async def wait_async(
        self, timeout: float | None = None, *, raise_on_failure: bool = False
    ) -> Mutation:
        """The awaitable form of :meth:`wait` (same errors)."""
        if not self._done.is_set():
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            if not self._done.is_set():  # not resolved between the check and the append
                try:
                    await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    raise self._timed_out(timeout) from None
        return self._outcome(raise_on_failure)

    def _timed_out(self, timeout: float | None) -> WaitTimeout:
        return WaitTimeout(
            f"mutation {self.client_mutation_id} still {self.status} after {timeout} s"
        )

    def _outcome(self, raise_on_failure: bool) -> Mutation:
        if raise_on_failure and self.status in ("rejected", "timed_out", "refused", "cancelled"):
            raise MutationError(f"mutation {self.client_mutation_id} {self.status}: {self.error}")
        return self

    def _resolve(self) -> None:
        """Called by the runtime when the ledger resolves the record."""
        self._done.set()
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            fut.get_loop().call_soon_threadsafe(_set_done, fut)

    def __repr__(self) -> str:
        extra = f" error={self.error!r}" if self.error else ""
        return (
            f"<Mutation {self.client_mutation_id} {self.topic}/{self.entity_id} "
            f"{self.status}{extra}>"
        )


def mutate_frame(rec: MutationRecord) -> Mutate:
    """The ``mutate`` frame that sends ``rec``."""
    return Mutate(
        topic=rec.topic,
        entity_id=rec.entity_id,
        patch=rec.patch,
        client_mutation_id=rec.client_mutation_id,
    )


def log_mutation(log: EnvelopeLog, rec: MutationRecord) -> None:
    """One row of the log's mutations table for a resolved (or refused) mutation."""
    resolved = rec.resolved_at if rec.resolved_at is not None else math.nan
    latency = rec.latency_ms if rec.latency_ms is not None else math.nan
    if rec.status == "late_confirmation":
        resolved = time.time()
        latency = (resolved - rec.created_at) * 1000.0
    log.append_mutation(
        rec.client_mutation_id,
        rec.topic,
        rec.entity_id,
        rec.created_at,
        resolved,
        rec.status,
        latency,
        rec.while_degraded,
    )
