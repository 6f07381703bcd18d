"""A recording on disk: a directory of rolling parquet files.

``conn.record(path)`` writes ``path/part-000001.parquet``, ``part-000002...``:
each part is a complete file of the :mod:`.parquet` layout holding the rows
appended since the previous part (and the frames received meanwhile). Parts
are written under a temporary name and renamed, so a process killed while
writing leaves every earlier part intact and no half-written part under a
``part-*.parquet`` name; :func:`read_dir` reads them all back as one log.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]

from .parquet import FRAMES, MAX_READ_BYTES, read_tables
from .recorded import concat_frames
from .schema import TABLES, TelemetryFileError

#: File names of the parts of a recording, in order.
PART_PATTERN: Final = re.compile(r"^part-(\d{6,})\.parquet$")


def part_path(directory: str | os.PathLike[str], number: int) -> Path:
    return Path(directory) / f"part-{number:06d}.parquet"


def list_parts(directory: str | os.PathLike[str]) -> list[Path]:
    """The parts in ``directory``, in order (other files, e.g. ``*.partial-PID``, ignored)."""
    found = []
    for entry in os.scandir(directory):
        m = PART_PATTERN.match(entry.name)
        if m and entry.is_file():
            found.append((int(m.group(1)), Path(entry.path)))
    return [p for _, p in sorted(found)]


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables).unify_dictionaries()


def read_dir(
    directory: str | os.PathLike[str], max_bytes: int = MAX_READ_BYTES
) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """Read every part of a recording; like :func:`~.parquet.read_tables` for one file.

    Rows are concatenated per table in part order; tallies and totals come
    from the last readable part (they are running figures). A part that
    cannot be read (e.g. cut short by a machine crash) is skipped with a
    warning, and listed in the ``recording`` metadata under ``skipped``.
    """
    parts = list_parts(directory)
    if not parts:
        raise TelemetryFileError(
            f"{os.fspath(directory)!r} holds no recording files (part-NNNNNN.parquet); "
            "write one with conn.record(path)"
        )
    infos: list[dict[str, Any]] = []
    tables: dict[str, list[pa.Table]] = {spec.name: [] for spec in TABLES}
    frames: list[pa.Table] = []
    skipped: list[str] = []
    for path in parts:
        try:
            info, part = read_tables(path, max_bytes)
        except (TelemetryFileError, pa.ArrowException, OSError) as exc:
            skipped.append(path.name)
            warnings.warn(f"rtnb: skipping unreadable recording file {path}: {exc}", stacklevel=3)
            continue
        infos.append(info)
        for name, rows in part.items():
            (frames if name == FRAMES else tables[name]).append(rows)
    if not infos:
        raise TelemetryFileError(f"{os.fspath(directory)!r}: no readable recording files")
    last = infos[-1]
    merged: dict[str, Any] = {"tables": {}, "tallies": last.get("tallies", {})}
    out: dict[str, pa.Table] = {}
    for spec in TABLES:
        out[spec.name] = _concat(tables[spec.name])
        metas = [i["tables"][spec.name] for i in infos]
        merged["tables"][spec.name] = {
            "rows": out[spec.name].num_rows,
            "total": int(metas[-1]["total"]),
            "capacity": max(int(m["capacity"]) for m in metas),
        }
    if frames:
        out[FRAMES] = concat_frames(frames)
    recording = dict(last.get("recording", {}))
    recording["parts"] = len(infos)
    if skipped:
        recording["skipped"] = skipped
    merged["recording"] = recording
    return merged, out
