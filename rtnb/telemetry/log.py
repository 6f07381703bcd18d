"""``EnvelopeLog``: every envelope, state change, mutation and heartbeat, as columns.

Pure Python: importing this module does not import pandas, numpy or pyarrow
(``import rtnb`` must stay light). DataFrames, summaries and parquet files are
built on demand by :mod:`.frames`, :mod:`.summary` and :mod:`.parquet`, which
are imported the first time they are needed.

Storage and threading are described in :mod:`rtnb.telemetry.ring`: the
runtime thread appends (a few tenths of a microsecond per envelope, no lock
per row), any other thread may build DataFrames concurrently and always sees
a consistent cut of each table. The four tables are separate rings, so a
snapshot is consistent per table, not across tables.

The log never stores tokens or replay cursors: no ``append_*`` method takes
one, and it must stay that way (DESIGN.md §3: they never go in logs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..core.status import OUTCOMES_BY_CODE, Outcome
from .ring import BATCH, Converted, Ring, TableSnapshot, Tally
from .schema import (
    ENVELOPE_CAPACITY,
    ENVELOPES,
    HEARTBEAT_CAPACITY,
    HEARTBEATS,
    MUTATION_CAPACITY,
    MUTATIONS,
    STATE_CAPACITY,
    STATES,
)

if TYPE_CHECKING:
    import pandas as pd

    from .recorded import Recording
    from .summary import Summary

_ENVELOPE_FLAT_BATCH = BATCH * len(ENVELOPES.columns)
_OUTCOME_COLUMN = ENVELOPES.names.index("outcome")
_COUNT_COLUMN = ENVELOPES.names.index("count")
_GAP_CODE = OUTCOMES_BY_CODE.index(Outcome.GAP_UNRECOVERABLE)
_STATUS_COLUMN = STATES.names.index("status")
_PREVIOUS_COLUMN = STATES.names.index("previous")
_DURATION_COLUMN = STATES.names.index("duration_s")
_AT_COLUMN = STATES.names.index("at")
# One definition of degraded time (rtnb.telemetry.incidents): from entering
# degraded/reconnecting until subscribed again (or closed).
_INCIDENT_STARTS = frozenset({"degraded", "reconnecting"})
_INCIDENT_ENDS = frozenset({"subscribed", "closed"})
_MUTATION_OUTCOME_COLUMN = MUTATIONS.names.index("outcome")


class _OutcomeTally(Tally):
    """Envelopes per outcome, and unrecoverable sequences, over every envelope ever
    appended (kept after overflow)."""

    def __init__(self) -> None:
        self.counts = [0] * len(OUTCOMES_BY_CODE)
        #: sequences the ``gap_unrecoverable`` rows stand for (a row is a range)
        self.gap_sequences = 0

    def update(self, ring: Ring, columns: Sequence[Converted]) -> None:
        raw = columns[_OUTCOME_COLUMN].tobytes()  # type: ignore[union-attr]
        counts = self.counts
        for code in range(len(counts)):
            counts[code] += raw.count(code)
        if _GAP_CODE.to_bytes() in raw:
            sizes = columns[_COUNT_COLUMN]
            self.gap_sequences += sum(sizes[i] for i, code in enumerate(raw) if code == _GAP_CODE)

    @property
    def state(self) -> dict[str, Any]:
        return {
            "outcomes": {o.value: n for o, n in zip(OUTCOMES_BY_CODE, self.counts, strict=True)},
            "gap_sequences": self.gap_sequences,
        }

    def restore(self, state: dict[str, Any]) -> None:
        saved = state.get("outcomes", {})
        self.counts = [int(saved.get(o.value, 0)) for o in OUTCOMES_BY_CODE]
        # files written before gap rows carried a count hold one row per sequence
        self.gap_sequences = int(state.get("gap_sequences", self.counts[_GAP_CODE]))


class _StateTally(Tally):
    """Entries into each status, seconds spent in each status (from ``duration_s``),
    and incident time: the seconds of every finished incident, and when the
    open one (if any) began — the same periods as ``log.incidents()``."""

    def __init__(self) -> None:
        self.entries: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        #: None: restored from a file written before incidents were tallied
        self.incident_s: float | None = 0.0
        self.incident_since: float | None = None

    def update(self, ring: Ring, columns: Sequence[Converted]) -> None:
        status_codes, previous_codes = ring.codes[_STATUS_COLUMN], ring.codes[_PREVIOUS_COLUMN]
        assert status_codes is not None and previous_codes is not None
        statuses, previous = status_codes.values, previous_codes.values
        for s, p, d, at in zip(
            columns[_STATUS_COLUMN],
            columns[_PREVIOUS_COLUMN],
            columns[_DURATION_COLUMN],
            columns[_AT_COLUMN],
            strict=True,
        ):
            if s >= 0:
                status = statuses[s]
                self.entries[status] = self.entries.get(status, 0) + 1
                self._incident(status, at)
            if p >= 0 and math.isfinite(d):
                self.seconds[previous[p]] = self.seconds.get(previous[p], 0.0) + d

    def _incident(self, status: str, at: float) -> None:
        if self.incident_since is None:
            if status in _INCIDENT_STARTS:
                self.incident_since = at
        elif status in _INCIDENT_ENDS:
            if self.incident_s is not None:
                self.incident_s += at - self.incident_since
            self.incident_since = None

    @property
    def state(self) -> dict[str, Any]:
        return {
            "entries": dict(self.entries),
            "seconds": dict(self.seconds),
            "incident_s": self.incident_s,
            "incident_since": self.incident_since,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.entries = {str(k): int(v) for k, v in state.get("entries", {}).items()}
        self.seconds = {str(k): float(v) for k, v in state.get("seconds", {}).items()}
        # Absent (a file written before incidents were tallied, or clear()): None,
        # and summary() recomputes incident time from the rows held.
        total, since = state.get("incident_s"), state.get("incident_since")
        self.incident_s = None if total is None else float(total)
        self.incident_since = None if since is None else float(since)


class _MutationTally(Tally):
    """Mutations per outcome over every mutation ever appended."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}

    def update(self, ring: Ring, columns: Sequence[Converted]) -> None:
        codes = ring.codes[_MUTATION_OUTCOME_COLUMN]
        assert codes is not None
        for code in columns[_MUTATION_OUTCOME_COLUMN]:
            name = codes.values[code] if code >= 0 else "none"
            self.outcomes[name] = self.outcomes.get(name, 0) + 1

    @property
    def state(self) -> dict[str, Any]:
        return {"outcomes": dict(self.outcomes)}

    def restore(self, state: dict[str, Any]) -> None:
        self.outcomes = {str(k): int(v) for k, v in state.get("outcomes", {}).items()}


class EnvelopeLog:
    """Columnar, bounded log of envelopes, connection states, mutations and heartbeats.

    Each table is a ring of at most ``*_capacity`` rows (defaults:
    :data:`~rtnb.telemetry.schema.ENVELOPE_CAPACITY` = 500,000,
    :data:`~rtnb.telemetry.schema.STATE_CAPACITY` = 10,000,
    :data:`~rtnb.telemetry.schema.MUTATION_CAPACITY` = 50,000,
    :data:`~rtnb.telemetry.schema.HEARTBEAT_CAPACITY` = 50,000). When a table
    is full its oldest row is overwritten and counted in :attr:`dropped`;
    :attr:`counts` and :meth:`summary` keep counting every row ever appended.
    Columns grow with the data, so an idle log costs almost nothing.
    """

    def __init__(
        self,
        *,
        envelope_capacity: int = ENVELOPE_CAPACITY,
        state_capacity: int = STATE_CAPACITY,
        mutation_capacity: int = MUTATION_CAPACITY,
        heartbeat_capacity: int = HEARTBEAT_CAPACITY,
    ) -> None:
        self._envelopes = Ring(ENVELOPES, envelope_capacity, _OutcomeTally())
        self._states = Ring(STATES, state_capacity, _StateTally())
        self._mutations = Ring(MUTATIONS, mutation_capacity, _MutationTally())
        self._heartbeats = Ring(HEARTBEATS, heartbeat_capacity)
        self._rings: dict[str, Ring] = {
            r.spec.name: r
            for r in (self._envelopes, self._states, self._mutations, self._heartbeats)
        }
        # The hot path appends straight to the envelope ring's pending list.
        self._envelope_rows = self._envelopes.pending
        #: recorded frames, when read from a recording (see :attr:`recording`)
        self._recording: Recording | None = None
        #: where ``to_parquet`` takes live frames from (a connection's flight recorder)
        self._frame_source: Callable[[], Recording | None] | None = None

    # -- appending (runtime thread) ----------------------------------------------------------

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
    ) -> None:
        """Log one envelope: amortised O(1), no lock per row, no DataFrame work.

        Times are unix seconds (``occurred_at`` NaN when unknown, e.g. an
        invalid frame); ``sequence`` -1 means none; ``outcome`` is a code
        from :data:`rtnb.core.status.OUTCOME_CODES`; ``attempt`` is the
        connection attempt the envelope arrived on; ``nbytes`` the frame size;
        ``error`` the ``InvalidFrame`` text of an ``invalid`` envelope;
        ``count`` the number of sequences the row stands for: 1, except for a
        ``gap_unrecoverable`` range (``sequence`` .. ``sequence + count - 1``),
        which is one row whatever its size.
        Values are type-checked in batches: a wrong type raises
        ``LocalProtocolError`` from a later ``append_*`` or read, naming the
        column, and only the offending rows are left out.
        """
        rows = self._envelope_rows
        rows += (
            received_at,
            occurred_at,
            topic,
            type,
            id,
            sequence,
            entity_id,
            outcome,
            transport,
            attempt,
            nbytes,
            count,
            error,
        )
        if len(rows) >= _ENVELOPE_FLAT_BATCH:
            self._envelopes.commit(blocking=False)

    def envelope_rows(self) -> tuple[list[Any], int, Callable[..., None]]:
        """Where :meth:`append_envelope` puts a row, for a caller that appends in its own
        loop (the client pipeline's single-event fast path): the pending flat list (add a
        row's 13 values with ``+=``, in the order of :meth:`append_envelope`'s parameters
        with ``count`` before ``error``), the length at which to commit, and the commit (call
        it with ``blocking=False``) -- exactly what :meth:`append_envelope` does."""
        return self._envelope_rows, _ENVELOPE_FLAT_BATCH, self._envelopes.commit

    def append_envelopes(
        self,
        n: int,
        received_at: float | list[float],
        occurred_at: float | list[float],
        topic: str | list[str],
        type: str | list[str],
        id: str | list[str | None] | None,
        sequence: int | list[int],
        entity_id: str | list[str | None] | None,
        outcome: int | list[int],
        transport: str,
        attempt: int,
        nbytes: int | list[int],
    ) -> None:
        """Log ``n`` envelopes at once (a batch frame's), as columns: each argument is
        a list of ``n`` values or one value for every row (no ``error``, ``count`` 1).
        The same rows as ``n`` calls of :meth:`append_envelope`, converted once per
        column instead of once per row."""
        self._envelopes.append_columns(
            (
                received_at, occurred_at, topic, type, id, sequence, entity_id, outcome,
                transport, attempt, nbytes, 1, None,
            ),
            n,
        )  # fmt: skip

    def append_state(
        self,
        at: float,
        status: str,
        previous: str | None,
        reason: str | None,
        attempt: int,
        duration_s: float,
    ) -> None:
        """Log a connection transition ``previous -> status`` at ``at`` (unix seconds).

        ``duration_s`` is the time spent in ``previous`` (NaN if unknown);
        statuses are :class:`rtnb.Status` values.
        """
        self._states.append((at, status, previous, reason, attempt, duration_s))

    def append_mutation(
        self,
        client_mutation_id: str,
        topic: str,
        entity_id: str | None,
        created_at: float,
        resolved_at: float,
        outcome: str,
        latency_ms: float,
        while_degraded: bool,
    ) -> None:
        """Log a mutation's resolution (``outcome``: confirmed, rejected, timed_out, ...).

        ``resolved_at`` and ``latency_ms`` are NaN while unresolved (e.g. queued).
        """
        self._mutations.append(
            (
                client_mutation_id,
                topic,
                entity_id,
                created_at,
                resolved_at,
                outcome,
                latency_ms,
                while_degraded,
            )
        )

    def append_heartbeat(self, at: float, rtt_ms: float, server_lag_ms: float) -> None:
        """Log a heartbeat or pong at ``at``; either figure may be NaN."""
        self._heartbeats.append((at, rtt_ms, server_lag_ms))

    # -- reading (any thread) ---------------------------------------------------------------

    def snapshot(self, table: str, names: Sequence[str] | None = None) -> TableSnapshot:
        """A consistent copy of ``table`` (``"envelopes"``, ``"states"``, ``"mutations"``,
        ``"heartbeats"``), only the columns ``names`` (all when None), safe to read
        on any thread: what charts, widgets and summaries read instead of DataFrames."""
        return self._rings[table].snapshot(names)

    def tail(self, table: str, since: int) -> TableSnapshot:
        """Like :meth:`snapshot`, only the rows appended after the first ``since`` ever
        (a recorder's increment; rows already overwritten are gone)."""
        return self._rings[table].tail(since)

    @property
    def version(self) -> tuple[int, ...]:
        """Rows ever appended per table (committed or not), without taking a lock:
        changes whenever anything is appended, so a poller can skip unchanged logs."""
        return tuple(ring.total + len(ring.pending) // ring.width for ring in self._rings.values())

    def mark(self) -> tuple[tuple[str, int, dict[str, Any]], ...]:
        """Where the log is now: per table, rows ever appended and the tally then
        (what :meth:`truncate` goes back to; a replay's checkpoints keep one)."""
        out = []
        for name, ring in self._rings.items():
            snap = ring.snapshot(())
            out.append((name, snap.total, snap.tally))
        return tuple(out)

    def truncate(self, mark: tuple[tuple[str, int, dict[str, Any]], ...]) -> bool:
        """Go back to ``mark`` (from :meth:`mark`): rows appended since are forgotten.
        False if it cannot (rows before the mark were overwritten): then nothing
        is guaranteed and the caller should :meth:`clear` and rebuild."""
        return all(self._rings[name].truncate(total, tally) for name, total, tally in mark)

    def load_table(self, table: str, *, total: int, tally: dict[str, Any], **columns: Any) -> None:
        """Replace ``table``'s rows with ``columns`` (one list per column), ``total`` rows
        ever appended and its ``tally`` (reading a parquet file)."""
        self._rings[table].restore(total=total, tally=tally, **columns)

    def snapshot_all(self) -> dict[str, TableSnapshot]:
        """:meth:`snapshot` of every table (what :meth:`restore_prefix` restores from)."""
        return {name: ring.snapshot() for name, ring in self._rings.items()}

    def restore_prefix(
        self, full: dict[str, TableSnapshot], mark: tuple[tuple[str, int, dict[str, Any]], ...]
    ) -> bool:
        """Hold what the log held at ``mark``, taken from ``full`` (a later
        :meth:`snapshot_all` of this log that never overflowed): forwards or backwards.
        False if it cannot (then the caller should :meth:`clear` and rebuild)."""
        return all(
            self._rings[name].restore_prefix(full[name], total, tally)
            for name, total, tally in mark
        )

    @property
    def envelopes(self) -> pd.DataFrame:
        """One row per envelope held, oldest first (DESIGN.md §5 columns)."""
        from .frames import envelopes_frame

        return envelopes_frame(self._envelopes.snapshot())

    @property
    def states(self) -> pd.DataFrame:
        """One row per connection transition held, oldest first."""
        from .frames import states_frame

        return states_frame(self._states.snapshot())

    @property
    def mutations(self) -> pd.DataFrame:
        """One row per mutation resolution held, oldest first."""
        from .frames import mutations_frame

        return mutations_frame(self._mutations.snapshot())

    @property
    def heartbeats(self) -> pd.DataFrame:
        """One row per heartbeat held, oldest first."""
        from .frames import heartbeats_frame

        return heartbeats_frame(self._heartbeats.snapshot())

    def __len__(self) -> int:
        """Envelopes currently held (at most the envelope capacity)."""
        return self._envelopes.snapshot(()).held

    @property
    def counts(self) -> dict[str, int]:
        """Envelopes per outcome, over every envelope ever appended (all outcomes listed)."""
        outcomes: dict[str, int] = self._envelopes.snapshot(()).tally["outcomes"]
        return outcomes

    @property
    def unrecoverable(self) -> int:
        """Sequences logged ``gap_unrecoverable``, ever (a row is a range of ``count``)."""
        n: int = self._envelopes.snapshot(()).tally["gap_sequences"]
        return n

    @property
    def dropped(self) -> dict[str, int]:
        """Rows overwritten by overflow, per table (``{"envelopes": 3, ...}``)."""
        return {name: ring.snapshot(()).dropped for name, ring in self._rings.items()}

    @property
    def capacity(self) -> dict[str, int]:
        """Rows kept per table."""
        return {name: ring.capacity for name, ring in self._rings.items()}

    def summary(self) -> Summary:
        """Headline figures as a dict of plain JSON-friendly values (see :mod:`.summary`).

        In a notebook it shows as a small table.
        """
        from .summary import summarize

        return summarize(self)

    def incidents(self, *, recovery_window: float | None = None) -> pd.DataFrame:
        """The degraded periods: start, end, duration, reason, events missed/replayed/lost.

        See :mod:`rtnb.telemetry.incidents` for the exact definitions.
        """
        from .incidents import RECOVERY_WINDOW, incidents

        window = RECOVERY_WINDOW if recovery_window is None else recovery_window
        return incidents(self, recovery_window=window)

    @property
    def recording(self) -> Recording | None:
        """The recorded frames and recording metadata, if this log was read from a recording."""
        return self._recording

    def set_frame_source(self, source: Callable[[], Recording | None] | None) -> None:
        """Where :meth:`to_parquet` takes the frames of a live log from: a connection sets
        its flight recorder here (the last connection writing to a log wins)."""
        self._frame_source = source

    def frames_for_file(self) -> Recording | None:
        """The frames :meth:`to_parquet` writes: those read from a recording, else the
        flight recorder's window (None if neither)."""
        if self._recording is not None:
            return self._recording
        return self._frame_source() if self._frame_source is not None else None

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write all four tables (and recorded frames, if any) to one parquet file.

        A live connection's log includes its flight recorder's frames (the most
        recent ones, see :mod:`rtnb.client.flight`), so ``rtnb.replay`` of the file
        plays the window back. Layout in :mod:`.parquet`.
        """
        from .parquet import write_log

        write_log(self, path)

    @classmethod
    def read_parquet(
        cls, path: str | os.PathLike[str], *, max_bytes: int | None = None
    ) -> EnvelopeLog:
        """Load a log from a file written by :meth:`to_parquet`, or a recording directory.

        A directory is read as the rolling files ``conn.record(path)`` wrote
        (every complete file; a file cut short by a crash is skipped). Its
        DataFrames and summary match the original's. A file that is not one, or
        that declares more than ``max_bytes`` decompressed (default
        ``rtnb.telemetry.parquet.MAX_READ_BYTES``, 2 GiB), raises
        :class:`TelemetryFileError` naming it, before anything large is read.
        """
        from .parquet import MAX_READ_BYTES, read_log

        return read_log(cls, path, MAX_READ_BYTES if max_bytes is None else max_bytes)

    def clear(self) -> None:
        """Forget every row and every count (and recorded frames)."""
        for ring in self._rings.values():
            ring.clear()
        self._recording = None

    def __repr__(self) -> str:
        parts = []
        for name, ring in self._rings.items():
            snap = ring.snapshot(())
            text = f"{snap.held:,} {name}"
            if snap.dropped:
                text += f" ({snap.dropped:,} dropped)"
            parts.append(text)
        return f"<EnvelopeLog {', '.join(parts)}>"
