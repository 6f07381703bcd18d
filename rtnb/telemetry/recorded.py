"""The ``frames`` table of a recording: sanitised client-bound frames, in arrival order.

A recording (``conn.record(path)``) keeps, beside the four log tables, every
frame the connection received, so that :func:`rtnb.replay` can feed them
through the same pipeline again. Rows, in the order they happened:

``frame``
    One raw frame as received (tokens replaced, see :mod:`.sanitize`);
    ``frame_text`` says whether it arrived as ``str`` (it is stored as UTF-8).
``topics``
    The connection's subscribed topics changed: ``frame`` holds
    ``{"topic": {"ordering": ..., "gap_timeout": ...}, ...}`` as JSON, the
    full set from then on.
``seed``
    A synthetic ``snapshot`` frame of a topic's state when the recording
    started after the topic was subscribed (the replay starts from it).

Kept in memory as one pyarrow Table (a binary column is one buffer, not a
Python object per frame); ``EnvelopeLog`` holds it when read from a recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]

FRAME_KINDS: Final = ("frame", "topics", "seed")
_DICT = pa.dictionary(pa.int32(), pa.string())

#: Arrow fields of the frames table (``received_at``, ``transport`` and
#: ``connection_attempt`` mean what they mean in ``envelopes``).
FRAMES_SCHEMA: Final = pa.schema(
    [
        pa.field("received_at", pa.float64(), metadata={b"rtnb.unit": b"unix seconds (UTC)"}),
        pa.field("frame_kind", _DICT),
        pa.field("transport", _DICT),
        pa.field("connection_attempt", pa.int32()),
        pa.field("frame", pa.binary()),
        pa.field("frame_text", pa.bool_()),
    ]
)
FRAME_COLUMNS: Final = tuple(FRAMES_SCHEMA.names)

#: One row: (received_at, kind, transport, attempt, sanitised bytes, was_text).
Row = tuple[float, str, str, int, bytes, bool]


def frames_table(rows: Sequence[Row]) -> pa.Table:
    """Rows as a frames table (columns in :data:`FRAME_COLUMNS` order)."""
    if not rows:
        return empty_frames()
    received, kind, transport, attempt, data, text = zip(*rows, strict=True)
    arrays: list[Any] = [
        pa.array(received, type=pa.float64()),
        pa.array(kind, type=pa.string()).dictionary_encode(),
        pa.array(transport, type=pa.string()).dictionary_encode(),
        pa.array(attempt, type=pa.int32()),
        pa.array(data, type=pa.binary()),
        pa.array(text, type=pa.bool_()),
    ]
    return pa.Table.from_arrays(arrays, schema=FRAMES_SCHEMA)


def empty_frames() -> pa.Table:
    return FRAMES_SCHEMA.empty_table()


def concat_frames(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate frames tables (dictionaries unified)."""
    parts = [t.select(list(FRAME_COLUMNS)).cast(FRAMES_SCHEMA) for t in tables if t.num_rows]
    if not parts:
        return empty_frames()
    return pa.concat_tables(parts).unify_dictionaries().combine_chunks()


@dataclass(slots=True)
class Recording:
    """What a log read from a recording carries beside its four tables.

    ``frames`` is the frames table; ``info`` the recording's metadata
    (``payloads``: whether payloads were kept, ``started_at``,
    ``frames_dropped``: frames lost to a full buffer, ``parts``: files read).
    """

    frames: pa.Table
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def payloads(self) -> bool:
        return bool(self.info.get("payloads", True))

    def __len__(self) -> int:
        return int(self.frames.num_rows)
