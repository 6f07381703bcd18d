"""Parquet files of a log: ``EnvelopeLog.to_parquet`` / ``EnvelopeLog.read_parquet``.

Layout (schema version 2)
-------------------------
Parquet holds one table per file, so the log's tables are stacked in *long
format*: one file, one schema that is the union of the tables' columns,
and a ``log_table`` column (``"envelopes"``, ``"states"``, ``"mutations"``,
``"heartbeats"`` and, in recordings, ``"frames"``) saying which table a row
belongs to. Rows are written table by table, each table in arrival order and
in its own row groups; columns a table does not have are null in its rows
(parquet stores runs of nulls in a few bytes). Columns with the same name
mean the same thing in every table that has them (``topic``, ``entity_id``,
``outcome``, ``at``). So ``pd.read_parquet(path)`` or DuckDB's
``WHERE log_table = 'states'`` work without rtnb.

Columns are stored as the log stores them, which makes the round trip
exact: times are ``float64`` unix seconds (field metadata ``rtnb.unit``),
strings with few distinct values are dictionary-encoded, ``sequence`` is
null where none. ``lag_ms`` is derived and not stored.

The file's key-value metadata holds ``rtnb.schema_version`` (``"2"``;
higher versions are refused with :class:`TelemetryFileError`) and
``rtnb.log``, a JSON object with, per table, the rows in the file, the rows
ever appended (so overflow stays visible) and the capacity, plus the
running tallies behind ``counts`` and ``summary()``, and, for recordings,
a ``recording`` object (see :mod:`.recording`).

Version 2 added the ``frames`` table (:mod:`.recorded`: the sanitised frames
a replay feeds through the pipeline; never a token) and rolling files: a
*directory* of ``part-NNNNNN.parquet`` files, each one a complete file of
this layout holding the rows appended since the previous part
(:mod:`.rolling`). Version 1 files are still read.

The envelopes' ``count`` column (sequences a row stands for: a
``gap_unrecoverable`` row is a whole range) was added within version 2; files
without it read as ``count`` 1 on every row, which is what they meant (they
wrote one gap row per sequence).
"""

from __future__ import annotations

import json
import os
from array import array
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from ..core.status import OUTCOME_CODES, OUTCOMES_BY_CODE
from .frames import TIME_COLUMNS, ordered, ordered_list
from .recorded import FRAMES_SCHEMA, Recording, concat_frames
from .ring import Store, TableSnapshot
from .schema import (
    ADDED_COLUMN_DEFAULTS,
    SCHEMA_VERSION,
    TABLES,
    TYPECODES,
    Column,
    TableSpec,
    TelemetryFileError,
)

if TYPE_CHECKING:
    from .log import EnvelopeLog

TABLE_COLUMN = "log_table"
FRAMES = "frames"
VERSION_KEY = b"rtnb.schema_version"
LOG_KEY = b"rtnb.log"
COMPRESSION = "zstd"

_DICT = pa.dictionary(pa.int32(), pa.string())
_ARROW_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "int32": pa.int32(),
    "code8": _DICT,
    "bool": pa.bool_(),
    "cat": _DICT,
    "str": pa.string(),
    "sparse": pa.string(),
}
_SPECS = {spec.name: spec for spec in TABLES}
_OUTCOME_VALUES = {o.value: code for o, code in OUTCOME_CODES.items()}
_NUMPY_TYPES = {"d": np.float64, "q": np.int64, "i": np.int32, "B": np.uint8}


def file_schema() -> pa.Schema:
    """The union schema of all four tables, plus ``log_table``."""
    fields: dict[str, pa.Field] = {TABLE_COLUMN: pa.field(TABLE_COLUMN, _DICT, nullable=False)}
    for spec in TABLES:
        for col in spec.columns:
            meta = {b"rtnb.unit": b"unix seconds (UTC)"} if col.name in TIME_COLUMNS else None
            field = pa.field(col.name, _ARROW_TYPES[col.kind], metadata=meta)
            if col.name in fields and not fields[col.name].equals(field, check_metadata=True):
                raise AssertionError(f"column {col.name!r} differs between tables")
            fields[col.name] = field
    for field in FRAMES_SCHEMA:
        if field.name in fields and not fields[field.name].equals(field, check_metadata=True):
            raise AssertionError(f"column {field.name!r} differs between tables")
        fields[field.name] = field
    return pa.schema(list(fields.values()))


def _to_arrow(snap: TableSnapshot, col: Column) -> pa.Array:
    kind, name = col.kind, col.name
    if kind == "str":
        return pa.array(ordered_list(snap, name), type=pa.string())
    if kind == "sparse":
        values: list[str | None] = [None] * snap.held
        first = snap.total - snap.held
        for row, text in snap.sparse[name]:
            values[row - first] = text
        return pa.array(values, type=pa.string())
    data = ordered(snap, name)
    if kind == "float":
        return pa.array(data, type=pa.float64())
    if kind in ("int", "int32"):
        mask = data < 0 if name == "sequence" else None
        return pa.array(data, type=_ARROW_TYPES[kind], mask=mask)
    if kind == "bool":
        return pa.array(data.astype(bool), type=pa.bool_())
    if kind == "code8":
        dictionary = pa.array([o.value for o in OUTCOMES_BY_CODE], type=pa.string())
        return pa.DictionaryArray.from_arrays(pa.array(data.astype(np.int32)), dictionary)
    indices = pa.array(data, type=pa.int32(), mask=data < 0)
    dictionary = pa.array(snap.categories[name], type=pa.string())
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _tagged(name: str, columns: dict[str, pa.Array], n: int, schema: pa.Schema) -> pa.Table:
    """Rows of one table in the union ``schema``: its columns, nulls elsewhere."""
    tag = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([name]))
    arrays = [tag]
    for field in schema:
        if field.name == TABLE_COLUMN:
            continue
        col = columns.get(field.name)
        arrays.append(col if col is not None else pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _table(snap: TableSnapshot, schema: pa.Schema) -> pa.Table:
    columns = {c.name: _to_arrow(snap, c) for c in snap.spec.columns}
    return _tagged(snap.spec.name, columns, snap.held, schema)


def table_info(snaps: list[TableSnapshot]) -> dict[str, Any]:
    """The ``rtnb.log`` metadata of ``snaps`` (rows held, ever appended, capacity, tallies)."""
    return {
        "tables": {
            s.spec.name: {"rows": s.held, "total": s.total, "capacity": s.capacity} for s in snaps
        },
        "tallies": {s.spec.name: s.tally for s in snaps},
    }


def write_file(
    path: str | os.PathLike[str],
    snaps: list[TableSnapshot],
    info: dict[str, Any],
    frames: pa.Table | None = None,
) -> None:
    """Write ``snaps`` (one per table, in :data:`TABLES` order) and ``frames`` to ``path``.

    ``info`` is the ``rtnb.log`` metadata (see :func:`table_info`); the frames
    table's row count is added to it. The file is written next to the target
    and renamed, so a crash never leaves half a file behind.
    """
    info = dict(info)
    if frames is not None and frames.num_rows:
        info["tables"] = {**info["tables"], FRAMES: {"rows": frames.num_rows}}
    schema = file_schema().with_metadata(
        {VERSION_KEY: str(SCHEMA_VERSION).encode(), LOG_KEY: json.dumps(info).encode()}
    )
    target = os.fspath(path)
    partial = f"{target}.partial-{os.getpid()}"
    try:
        with pq.ParquetWriter(partial, schema, compression=COMPRESSION) as writer:
            for snap in snaps:
                if snap.held:
                    writer.write_table(_table(snap, schema))
            if frames is not None and frames.num_rows:
                columns = {n: frames.column(n).combine_chunks() for n in frames.column_names}
                writer.write_table(_tagged(FRAMES, columns, frames.num_rows, schema))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_log(log: EnvelopeLog, path: str | os.PathLike[str]) -> None:
    """Write ``log`` (and its recorded frames, if any) to the parquet file ``path``."""
    snaps = [log.snapshot(spec.name) for spec in TABLES]
    info = table_info(snaps)
    recording = log.frames_for_file()
    if recording is not None:
        info["recording"] = recording.info
    write_file(path, snaps, info, recording.frames if recording is not None else None)


# -- reading ---------------------------------------------------------------------------------


def _check_version(path: str | os.PathLike[str], meta: dict[bytes, bytes]) -> dict[str, Any]:
    raw = meta.get(VERSION_KEY)
    if raw is None or LOG_KEY not in meta:
        raise TelemetryFileError(
            f"{os.fspath(path)!r} is not an rtnb telemetry log: its parquet metadata has no "
            f"{VERSION_KEY.decode()!r}; write one with EnvelopeLog.to_parquet()"
        )
    try:
        version = int(raw)
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION:
        raise TelemetryFileError(
            f"{os.fspath(path)!r} was written with rtnb telemetry schema version {version}, "
            f"but this rtnb reads versions up to {SCHEMA_VERSION}; upgrade rtnb to read it"
        )
    if version < 1:
        raise TelemetryFileError(
            f"{os.fspath(path)!r}: invalid rtnb.schema_version {raw.decode(errors='replace')!r}"
        )
    try:
        info: dict[str, Any] = json.loads(meta[LOG_KEY])
    except ValueError as exc:
        raise TelemetryFileError(
            f"{os.fspath(path)!r}: unreadable rtnb.log metadata ({exc})"
        ) from None
    return info


def _codes(arr: pa.Array) -> tuple[np.ndarray[Any, Any], list[str]]:
    """A (dictionary) string array -> int32 codes (-1 for null) and the dictionary values."""
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    indices = pc.fill_null(arr.indices.cast(pa.int32()), -1)
    return indices.to_numpy(zero_copy_only=False), arr.dictionary.to_pylist()


def _packed(values: np.ndarray[Any, Any], typecode: str) -> array[Any]:
    out = array(typecode)
    out.frombytes(np.ascontiguousarray(values, dtype=_NUMPY_TYPES[typecode]).tobytes())
    return out


def _from_arrow(spec: TableSpec, part: pa.Table, total: int) -> dict[str, Any]:
    columns: dict[str, Store] = {}
    categories: dict[str, list[str]] = {}
    sparse: dict[str, list[tuple[int, str]]] = {}
    first = total - part.num_rows
    for col in spec.columns:
        arr = part.column(col.name).combine_chunks()
        kind = col.kind
        if kind in ("str", "sparse"):
            values = arr.cast(pa.string()).to_pylist()
            if kind == "str":
                columns[col.name] = values
            else:
                sparse[col.name] = [(first + i, v) for i, v in enumerate(values) if v is not None]
        elif kind in ("cat", "code8"):
            codes, dictionary = _codes(arr)
            if kind == "cat":
                columns[col.name] = _packed(codes, "i")
                categories[col.name] = dictionary
                continue
            lut = np.array([_OUTCOME_VALUES.get(v, -1) for v in dictionary] + [-1])
            mapped = lut[codes]
            if (mapped < 0).any():
                bad = codes[np.argmax(mapped < 0)]
                raise TelemetryFileError(
                    f"{spec.name}.{col.name}: {dictionary[bad] if bad >= 0 else None!r} "
                    f"is not an outcome (expected one of {', '.join(_OUTCOME_VALUES)})"
                )
            columns[col.name] = _packed(mapped, "B")
        else:
            fill: Any = ADDED_COLUMN_DEFAULTS.get(col.name)
            if fill is None:
                fill = {"float": float("nan"), "bool": False}.get(kind, -1)
            data = pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)
            columns[col.name] = _packed(data, TYPECODES[kind])
    return {"columns": columns, "categories": categories, "sparse": sparse}


def read_tables(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """Check ``path``'s schema version and split it into its tables.

    Returns the ``rtnb.log`` metadata and, per table, its rows in arrival
    order (only that table's columns); ``"frames"`` is there only if the file
    holds recorded frames. A directory of rolling files is read by
    :func:`rtnb.telemetry.rolling.read_dir`, which concatenates these per table.
    """
    where = repr(os.fspath(path))
    info = _check_version(path, pq.read_metadata(path).metadata or {})
    data = pq.read_table(path)
    for name in ADDED_COLUMN_DEFAULTS:
        if name not in data.column_names:  # written before the column existed
            field = file_schema().field(name)
            data = data.append_column(field, pa.nulls(data.num_rows, field.type))
    try:
        rows = {spec.name: int(info["tables"][spec.name]["rows"]) for spec in TABLES}
        if FRAMES in info["tables"]:
            rows[FRAMES] = int(info["tables"][FRAMES]["rows"])
        if data.num_rows != sum(rows.values()):
            raise TelemetryFileError(
                f"{where} holds {data.num_rows} rows but its metadata lists {sum(rows.values())}"
            )
        tables: dict[str, pa.Table] = {}
        offset = 0
        for name, n in rows.items():
            part = data.slice(offset, n)
            offset += n
            tags = part.column(TABLE_COLUMN).cast(pa.string())
            if part.num_rows and not pc.all(pc.equal(tags, name)).as_py():
                raise TelemetryFileError(
                    f"{where}: rows of {name!r} are not where the metadata says"
                )
            names = list(FRAMES_SCHEMA.names) if name == FRAMES else list(_SPECS[name].names)
            tables[name] = part.select(names).unify_dictionaries()
        if FRAMES in tables:
            tables[FRAMES] = concat_frames([tables[FRAMES]])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TelemetryFileError):
            raise
        raise TelemetryFileError(f"{where}: malformed rtnb telemetry file ({exc!r})") from None
    return info, tables


def read_log(cls: type[EnvelopeLog], path: str | os.PathLike[str]) -> EnvelopeLog:
    """Read a file written by :func:`write_log`, or a directory of rolling files."""
    if os.path.isdir(path):
        from .rolling import read_dir

        info, tables = read_dir(path)
    else:
        try:
            info, tables = read_tables(path)
        except pa.ArrowInvalid as exc:  # not parquet at all: say which file, and what fits
            raise TelemetryFileError(
                f"{os.fspath(path)!r} is not an rtnb telemetry file (not parquet: {exc}); "
                "read what conn.log.to_parquet(path) or conn.record(path) wrote"
            ) from None
    try:
        meta = {spec.name: info["tables"][spec.name] for spec in TABLES}
        capacity = {
            name: max(int(m["capacity"]), tables[name].num_rows, 1) for name, m in meta.items()
        }
        log = cls(
            envelope_capacity=capacity["envelopes"],
            state_capacity=capacity["states"],
            mutation_capacity=capacity["mutations"],
            heartbeat_capacity=capacity["heartbeats"],
        )
        for spec in TABLES:
            part, total = tables[spec.name], int(meta[spec.name]["total"])
            log.load_table(
                spec.name,
                total=max(total, part.num_rows),
                tally=info.get("tallies", {}).get(spec.name, {}),
                **_from_arrow(spec, part, max(total, part.num_rows)),
            )
        if FRAMES in tables or "recording" in info:
            frames = tables.get(FRAMES, concat_frames([]))
            log._recording = Recording(frames, dict(info.get("recording", {})))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TelemetryFileError):
            raise
        raise TelemetryFileError(
            f"{os.fspath(path)!r}: malformed rtnb telemetry file ({exc!r})"
        ) from None
    return log
