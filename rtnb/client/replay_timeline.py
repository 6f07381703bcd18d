"""What a replay plays: a recording's frames and log rows merged into one timeline.

The frames of a recording are fed through a pipeline again (that rebuilds
the envelope log and the topic states); the connection states, heartbeats
and mutation resolutions cannot be recomputed without the server, so they
are copied from the recording into the replay's log as the replay passes
their time. :class:`Timeline` orders all of them by recorded time (frames
keep their arrival order even if the wall clock stepped back), and
:class:`FrameReader` hands out frames in order, decoding the binary column
a chunk at a time so a million-frame recording is never a million Python
objects at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]

from ..core.status import Status
from ..telemetry.frames import ordered, ordered_list
from ..telemetry.log import EnvelopeLog
from ..telemetry.recorded import Recording
from ..telemetry.ring import TableSnapshot

FRAME: Final = 0
STATE: Final = 1
HEARTBEAT: Final = 2
MUTATION: Final = 3
#: Frames decoded into Python objects at a time: 4,096.
FRAME_CHUNK: Final = 4_096


@dataclass(frozen=True, slots=True)
class TopicConfig:
    """How a topic was subscribed in the recording."""

    ordering: str
    gap_timeout: float


def _column(snap: TableSnapshot, name: str) -> list[Any]:
    """Column ``name`` of ``snap`` as Python values in arrival order (strings decoded)."""
    kind = next(c.kind for c in snap.spec.columns if c.name == name)
    if kind == "str":
        return list(ordered_list(snap, name))
    values = ordered(snap, name)
    if kind == "cat":
        cats = snap.categories[name]
        return [cats[c] if c >= 0 else None for c in values.tolist()]
    if kind == "bool":
        return [bool(v) for v in values.tolist()]
    return list(values.tolist())


def table_rows(log: EnvelopeLog, table: str) -> list[tuple[Any, ...]]:
    """Rows of a (small) log table as tuples in ``append_*`` argument order."""
    snap = log.snapshot(table)
    names = [c.name for c in snap.spec.columns]
    columns = [_column(snap, n) for n in names]
    return list(zip(*columns, strict=True)) if columns and snap.held else []


def _monotonic(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Sort keys that keep a source's own order even if its clock stepped back."""
    if not values.size:
        return values
    clean = np.where(np.isfinite(values), values, -np.inf)
    return np.maximum.accumulate(clean)


_STATUSES: Final = frozenset(s.value for s in Status)


def _check_statuses(states: list[tuple[Any, ...]]) -> None:
    """Every state row names a known status (else the file is damaged or newer)."""
    for n, row in enumerate(states):
        for value in (row[1], row[2]):
            if value and value not in _STATUSES:
                raise ValueError(
                    f"row {n} of the log's states names status {value!r}, not one of "
                    f"{', '.join(sorted(_STATUSES))}: the file is damaged or was written by "
                    "a newer rtnb; it cannot be replayed (its tables still read as DataFrames)"
                )


class Timeline:
    """Every replayable row of a recording, ordered by recorded time."""

    def __init__(self, log: EnvelopeLog, recording: Recording) -> None:
        frames = recording.frames
        self.frames = frames
        self.states = table_rows(log, "states")
        _check_statuses(self.states)
        self.heartbeats = table_rows(log, "heartbeats")
        self.mutations = table_rows(log, "mutations")
        frame_t = np.asarray(frames.column("received_at").to_numpy(), dtype=np.float64)
        state_t = np.array([r[0] for r in self.states], dtype=np.float64)
        beat_t = np.array([r[0] for r in self.heartbeats], dtype=np.float64)
        # A mutation shows up when it was resolved (or created, if it never was).
        mut_t = np.array(
            [r[4] if np.isfinite(r[4]) else r[3] for r in self.mutations], dtype=np.float64
        )
        parts = [frame_t, state_t, beat_t, mut_t]
        keys = np.concatenate([_monotonic(p) for p in parts])
        src = np.concatenate([np.full(len(p), s, dtype=np.int8) for s, p in enumerate(parts)])
        idx = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
        order = np.argsort(keys, kind="stable")
        self.times: np.ndarray[Any, Any] = keys[order]
        self.src: np.ndarray[Any, Any] = src[order]
        self.idx: np.ndarray[Any, Any] = idx[order]
        finite = self.times[np.isfinite(self.times)]
        self.start = float(finite[0]) if finite.size else 0.0
        self.end = float(finite[-1]) if finite.size else 0.0
        self.times = np.where(np.isfinite(self.times), self.times, self.start)
        self.topics = self._topics()

    def __len__(self) -> int:
        return int(self.times.size)

    def _topics(self) -> dict[str, TopicConfig]:
        """Every topic the recording subscribed, with its (first) configuration."""
        kinds = self.frames.column("frame_kind").combine_chunks()
        kinds = kinds.cast(pa.string()) if pa.types.is_dictionary(kinds.type) else kinds
        wanted = [i for i, k in enumerate(kinds.to_pylist()) if k in ("topics", "seed")]
        data = self.frames.column("frame").take(pa.array(wanted, type=pa.int64())).to_pylist()
        out: dict[str, TopicConfig] = {}
        for i, raw in zip(wanted, data, strict=True):
            decoded = json.loads(raw)
            if kinds[i].as_py() == "topics":
                for name, cfg in decoded.items():
                    out.setdefault(
                        name, TopicConfig(str(cfg["ordering"]), float(cfg["gap_timeout"]))
                    )
            else:
                out.setdefault(decoded["topic"], TopicConfig("sequence", 1.0))
        return out

    def first_transport(self) -> str:
        if not self.frames.num_rows:
            return "websocket"
        value = self.frames.column("transport")[0].as_py()
        return str(value) if value else "websocket"


class FrameReader:
    """Frame ``k`` of a frames table as ``(data, kind, transport, attempt)``, chunk by chunk."""

    def __init__(self, frames: pa.Table) -> None:
        self._frames = frames
        self._base = -1
        self._rows: list[tuple[Any, str, str, int]] = []

    def get(self, k: int) -> tuple[Any, str, str, int]:
        base = self._base
        if base < 0 or not base <= k < base + len(self._rows):
            self._load(k)
            base = self._base
        return self._rows[k - base]

    def _load(self, k: int) -> None:
        part = self._frames.slice(k, FRAME_CHUNK)

        def col(name: str) -> list[Any]:
            arr = part.column(name).combine_chunks()
            if pa.types.is_dictionary(arr.type):
                arr = arr.cast(pa.string())
            values: list[Any] = arr.to_pylist()
            return values

        data, text = col("frame"), col("frame_text")
        frames = [
            d.decode("utf-8", "surrogateescape") if t else d
            for d, t in zip(data, text, strict=True)
        ]
        self._rows = list(
            zip(frames, col("frame_kind"), col("transport"), col("connection_attempt"), strict=True)
        )
        self._base = k
