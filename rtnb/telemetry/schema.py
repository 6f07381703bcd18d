"""Column layout of the four telemetry tables, capacities, and the file schema version.

This module is pure Python (no pandas, numpy or pyarrow) so that the log, the
DataFrame builders and the parquet I/O share one description of every column.

Storage kinds (what a column holds inside the ring, see :mod:`rtnb.telemetry.ring`):

``float``
    ``array('d')``. Times are unix seconds; NaN means "unknown".
``int`` / ``int32``
    ``array('q')`` / ``array('i')``.
``code8``
    ``array('B')`` holding a code < ``n_codes`` (envelope outcomes, from
    :data:`rtnb.core.status.OUTCOME_CODES`).
``bool``
    ``array('B')`` of 0/1.
``cat``
    Dictionary-encoded string: ``array('i')`` of codes plus a str→code dict
    (``None`` is code -1). Cheap for low-cardinality values, and pandas
    Categoricals come straight out of it.
``str``
    A ``list`` of ``str | None`` (unique values such as event ids).
``sparse``
    Rarely set ``str`` values (envelope errors), kept as (row, text) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.status import OUTCOME_CODES
from ..protocol.errors import RtnbError

#: Default ring capacities (rows kept per table; older rows are overwritten and
#: counted in ``EnvelopeLog.dropped``). Sized for a notebook on a 1-2 GB Binder:
#: 500,000 envelopes at < 200 bytes each stay under ~100 MB; one state row per
#: connection transition, one mutation row per resolved mutation, and one
#: heartbeat every 5 s (50,000 heartbeats are ~69 hours) are far rarer.
ENVELOPE_CAPACITY = 500_000
STATE_CAPACITY = 10_000
MUTATION_CAPACITY = 50_000
HEARTBEAT_CAPACITY = 50_000

#: Version of the parquet layout written by ``EnvelopeLog.to_parquet``, stored
#: in the file's key-value metadata as ``rtnb.schema_version``. Files with a
#: higher version are refused rather than misread. Version 2 added recorded
#: frames and rolling files (see :mod:`rtnb.telemetry.parquet`); version 1
#: files are still read.
SCHEMA_VERSION = 2

Kind = Literal["float", "int", "int32", "code8", "bool", "cat", "str", "sparse"]

# Typecodes of the ``array.array`` behind each kind (``str`` / ``sparse`` are lists).
TYPECODES: dict[str, str] = {
    "float": "d",
    "int": "q",
    "int32": "i",
    "code8": "B",
    "bool": "B",
    "cat": "i",
}


class TelemetryFileError(RtnbError, ValueError):
    """A telemetry file cannot be read: not an rtnb log, or a newer schema version."""


@dataclass(frozen=True, slots=True)
class Column:
    """One stored column: its name in DataFrames and files, and its storage kind."""

    name: str
    kind: Kind
    #: For ``code8``: number of valid codes.
    n_codes: int = 0


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One telemetry table: its name and stored columns, in append order."""

    name: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


ENVELOPES = TableSpec(
    "envelopes",
    (
        Column("received_at", "float"),
        Column("occurred_at", "float"),
        Column("topic", "cat"),
        Column("type", "cat"),
        Column("id", "str"),
        Column("sequence", "int"),
        Column("entity_id", "cat"),
        Column("outcome", "code8", n_codes=len(OUTCOME_CODES)),
        Column("transport", "cat"),
        Column("connection_attempt", "int32"),
        Column("bytes", "int"),
        Column("count", "int"),
        Column("error", "sparse"),
    ),
)

#: Envelope columns added after a file layout shipped, with the value rows of
#: older files get: ``count`` (sequences a row stands for) is 1 for every row
#: those files hold, since they wrote one ``gap_unrecoverable`` row per sequence.
ADDED_COLUMN_DEFAULTS: dict[str, int] = {"count": 1}

#: ``states`` rows: a transition ``previous -> status`` at ``at``. Stored
#: ``duration_s`` is the time spent in ``previous`` (known when the row is
#: written); the DataFrame adds ``time_in_status_s``, the time spent in
#: ``status`` itself (until the next row; NaN for the newest, still current),
#: so ``states.groupby("status")["time_in_status_s"].sum()`` is time per state.
#: It is derived, not stored: files of every version read the same way.
STATE_DERIVED = "time_in_status_s"
STATES = TableSpec(
    "states",
    (
        Column("at", "float"),
        Column("status", "cat"),
        Column("previous", "cat"),
        Column("reason", "cat"),
        Column("attempt", "int"),
        Column("duration_s", "float"),
    ),
)

MUTATIONS = TableSpec(
    "mutations",
    (
        Column("client_mutation_id", "str"),
        Column("topic", "cat"),
        Column("entity_id", "cat"),
        Column("created_at", "float"),
        Column("resolved_at", "float"),
        Column("outcome", "cat"),
        Column("latency_ms", "float"),
        Column("while_degraded", "bool"),
    ),
)

HEARTBEATS = TableSpec(
    "heartbeats",
    (
        Column("at", "float"),
        Column("rtt_ms", "float"),
        Column("server_lag_ms", "float"),
    ),
)

TABLES: tuple[TableSpec, ...] = (ENVELOPES, STATES, MUTATIONS, HEARTBEATS)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
DEFAULT_CAPACITIES: dict[str, int] = {
    "envelopes": ENVELOPE_CAPACITY,
    "states": STATE_CAPACITY,
    "mutations": MUTATION_CAPACITY,
    "heartbeats": HEARTBEAT_CAPACITY,
}
