"""Telemetry: a columnar log of every envelope, state change, mutation and heartbeat.

Importing this package does not import pandas, numpy or pyarrow; DataFrames,
summaries and parquet files are built on demand (DESIGN.md §5).
"""

from __future__ import annotations

from .log import EnvelopeLog
from .schema import (
    ENVELOPE_CAPACITY,
    HEARTBEAT_CAPACITY,
    MUTATION_CAPACITY,
    SCHEMA_VERSION,
    STATE_CAPACITY,
    TelemetryFileError,
)

__all__ = [
    "ENVELOPE_CAPACITY",
    "HEARTBEAT_CAPACITY",
    "MUTATION_CAPACITY",
    "SCHEMA_VERSION",
    "STATE_CAPACITY",
    "EnvelopeLog",
    "TelemetryFileError",
]
