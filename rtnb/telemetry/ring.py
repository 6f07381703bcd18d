"""Columnar, bounded ring buffers: the storage behind :class:`rtnb.telemetry.EnvelopeLog`.

Theory of operation
-------------------
Appending must cost well under a microsecond, so an append does the least
possible work: the row's values are added to ``Ring.pending``, one flat list
(``pending += (a, b, c)`` is a single C call, atomic under the GIL). Every
``BATCH`` rows the writer *commits*: each column is cut out of the flat list
with a strided slice (``pending[k::width]``), packed in one C call
(``struct.pack`` of the whole column; dictionary-encoded strings first go
through ``map(index.get, values)``) and copied into its ring with slice
assignment. That amortises the per-column Python overhead over the batch.

Readers (DataFrame builds, ``len``, ``summary``) commit whatever is pending and
copy the columns while holding ``Ring.lock``. The writer takes the lock only
to commit, and never waits for it (``acquire(blocking=False)``): if a reader
holds it, rows simply stay pending until a later append. A commit removes only
the rows it converted (``del pending[:n]``) so rows appended concurrently are
never lost, and any thread may commit. A reader therefore sees a consistent
snapshot -- every column cut at the same row -- without the hot path ever
taking a lock per row. (This relies on the GIL making ``list += tuple``
atomic, as CPython does.)

Rows are stored at ``(oldest + k) % capacity``; columns grow with the data
(``array.extend`` over-allocates ~6%) until ``capacity`` and are then
overwritten oldest-first. Preallocating by doubling was measured no faster
(first-touch page faults dominate either way) and holds up to twice the
memory while growing. ``total`` counts every row ever committed, so
``total - held`` rows were dropped by overflow.

Dictionary-encoded (``cat``) columns map str -> small int with ``_Codes``;
``None`` is -1 (pandas' code for a missing category). If the dictionary grows
past ``COMPACT_MIN`` entries and twice the values still referenced by the ring,
unreferenced values are dropped and codes renumbered, so a stream of ever-new
entity ids cannot grow it without bound.

Values are type-checked per batch by the packing itself; if a batch fails,
its rows are retried one by one, the good ones are kept and
``LocalProtocolError`` names the first bad value.
"""

from __future__ import annotations

import copy
import functools
import struct
import threading
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypeAlias

from ..protocol.errors import LocalProtocolError
from .schema import TYPECODES, Column, TableSpec

#: Rows packed per commit. Large enough to amortise per-column call overhead,
#: small enough that pending rows stay a few hundred KB.
BATCH = 512

#: Dictionary size below which a ``cat`` column is never compacted.
COMPACT_MIN = 1 << 16

# array.array is subscriptable only from Python 3.12, hence the strings.
Store: TypeAlias = "array[Any] | list[Any]"
Converted: TypeAlias = "array[Any] | list[Any]"

_BAD_VALUE = (TypeError, ValueError, OverflowError, struct.error)


@functools.lru_cache(maxsize=256)
def _packer(typecode: str, n: int) -> struct.Struct:
    # Native sizes and byte order, exactly as array.array lays them out.
    return struct.Struct(f"{n}{typecode}")


def pack(typecode: str, values: Sequence[Any]) -> array[Any]:
    """``array(typecode, values)``, three times faster for a few hundred values."""
    out = array(typecode)
    out.frombytes(_packer(typecode, len(values)).pack(*values))
    return out


class _Codes:
    """Dictionary encoding of one column: ``index`` str -> code, ``values`` code -> str.

    ``None`` is code -1, and is not a key of ``index``: a dict whose keys are all
    exact ``str`` compares equal-but-distinct strings (every decoded frame's) with a
    plain memory compare instead of the generic rich compare. ``values`` and the
    keys hold plain ``str`` (``StrEnum`` members are stored by value; they hash and
    compare as their value).
    """

    __slots__ = ("index", "values")

    def __init__(self, values: Sequence[str] = ()) -> None:
        self.values: list[str] = list(values)
        self.index: dict[str, int] = {v: i for i, v in enumerate(self.values)}

    def add(self, key: Any) -> int:
        if key is None:
            return -1
        code = self.index.get(key)
        if code is not None:
            return code
        if not isinstance(key, str):
            raise TypeError(f"expected str or None, got {type(key).__name__}")
        code = len(self.values)
        plain = str.__str__(key)
        self.values.append(plain)
        self.index[plain] = code
        return code

    def encode(self, values: list[Any]) -> array[Any]:
        first, n = values[0], len(values)
        if first == values[-1] == values[n // 2] and values.count(first) == n:
            # One value for the whole batch (transport, a lone topic): checked in C.
            return array("i", (self.add(first),)) * n
        codes = list(map(self.index.get, values))
        try:
            return pack("i", codes)
        except struct.error:  # None, or a value seen for the first time (its code is None)
            return pack(
                "i", [self.add(v) if c is None else c for v, c in zip(values, codes, strict=True)]
            )


class Tally:
    """Aggregates kept over *every* committed row, not only the rows still held.

    Subclasses update themselves from each committed batch (under the ring's
    lock) and expose a JSON-friendly ``state``.
    """

    def update(self, ring: Ring, columns: Sequence[Converted]) -> None:
        """Fold one validated batch (all its rows, oldest first) into the tally."""

    @property
    def state(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the tally with ``state`` (as produced by :attr:`state`)."""


@dataclass(slots=True)
class TableSnapshot:
    """A consistent copy of one ring, safe to read without the lock.

    ``columns`` holds private copies in *storage* order; storage row ``start``
    is the oldest. ``sparse`` maps each sparse column to ``(absolute_row,
    text)`` pairs, where absolute row ``total - held`` is the oldest held row.
    ``categories`` gives the values behind each ``cat`` column's codes.
    """

    spec: TableSpec
    capacity: int
    total: int
    held: int
    start: int
    columns: dict[str, Store]
    categories: dict[str, list[str]]
    sparse: dict[str, list[tuple[int, str]]]
    tally: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return self.total - self.held


def _check_str(values: list[Any], name: str) -> None:
    if not set(map(type, values)) <= {str, type(None)}:
        for v in values:
            if v is not None and not isinstance(v, str):
                raise TypeError(f"expected str or None, got {type(v).__name__}")


class Ring:
    """One table's columns as bounded rings (see the module docstring)."""

    def __init__(self, spec: TableSpec, capacity: int, tally: Tally | None = None) -> None:
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"{spec.name} capacity must be a positive int, got {capacity!r}")
        kinds = [c.kind for c in spec.columns]
        if "sparse" in kinds and set(kinds[kinds.index("sparse") :]) != {"sparse"}:
            raise ValueError(f"{spec.name}: sparse columns must come last")
        self.spec = spec
        self.capacity = capacity
        self.tally = tally if tally is not None else Tally()
        #: Values of rows not yet committed, flat: row k is ``pending[k*width:(k+1)*width]``.
        self.pending: list[Any] = []
        self.width = len(spec.columns)
        self.flat_batch = BATCH * self.width
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        cols = self.spec.columns
        self.stores: list[Store] = [
            [] if c.kind == "str" else array(TYPECODES[c.kind]) for c in cols if c.kind != "sparse"
        ]
        self._stored: list[Column] = [c for c in cols if c.kind != "sparse"]
        self.codes: list[_Codes | None] = [
            _Codes() if c.kind == "cat" else None for c in self._stored
        ]
        self._compact_at = [COMPACT_MIN] * len(self._stored)
        self.sparse: dict[str, deque[tuple[int, str]]] = {
            c.name: deque() for c in cols if c.kind == "sparse"
        }
        self.total = 0
        self.next = 0  # storage index the next row goes to (the oldest row once full)

    @property
    def held(self) -> int:
        return len(self.stores[0])

    # -- writing ---------------------------------------------------------------------------

    def append(self, row: tuple[Any, ...]) -> None:
        """Queue one row (a tuple in ``spec.columns`` order); commits every ``BATCH`` rows."""
        pending = self.pending
        pending += row
        if len(pending) >= self.flat_batch:
            self.commit(blocking=False)

    def append_columns(self, columns: Sequence[Any], n: int) -> None:
        """Append ``n`` rows given as columns (in ``spec.columns`` order): each a list
        of ``n`` values, or one value (not a list) for every row. Rows pending are
        committed first, then the columns are converted and stored once, with no
        per-row work; if a reader holds the lock (or a value is bad) the rows are
        queued as ``append`` queues them, with the same checks."""
        if not n:
            return
        full = [c if type(c) is list else [c] * n for c in columns]
        if self.lock.acquire(blocking=False):
            try:
                self._commit_locked()
                try:
                    converted = [
                        self._convert(k, c, full[k]) for k, c in enumerate(self.spec.columns)
                    ]
                except _BAD_VALUE:
                    pass  # queued below: the flat commit keeps the good rows and says why
                else:
                    self._store(converted, n)
                    return
            finally:
                self.lock.release()
        pending = self.pending
        pending += chain.from_iterable(zip(*full, strict=True))
        if len(pending) >= self.flat_batch:
            self.commit(blocking=False)

    def commit(self, *, blocking: bool = True) -> None:
        """Move pending rows into the columns (skipped if not blocking and the lock is busy)."""
        if not self.lock.acquire(blocking):
            return
        try:
            self._commit_locked()
        finally:
            self.lock.release()

    def _commit_locked(self) -> None:
        pending = self.pending
        n = len(pending)
        if not n:
            return
        try:
            self._commit_flat(pending[:n])
        finally:
            del pending[:n]

    def _commit_flat(self, flat: list[Any]) -> None:
        width = self.width
        n = len(flat) // width
        try:
            converted = [
                self._convert(k, c, flat[k::width]) for k, c in enumerate(self.spec.columns)
            ]
        except _BAD_VALUE:
            good, problem = self._salvage(flat)
            if good:
                self._commit_flat(good)
            rejected = n - len(good) // width
            raise LocalProtocolError(
                f"{self.spec.name} log: {problem}; {rejected} row(s) with bad values were "
                "not logged (see EnvelopeLog.append_* for the expected types)"
            ) from None
        self._store(converted, n)

    def _salvage(self, flat: list[Any]) -> tuple[list[Any], str]:
        """Keep the rows that convert; describe the first one that does not."""
        good: list[Any] = []
        problem = ""
        width = self.width
        for start in range(0, len(flat), width):
            row = flat[start : start + width]
            try:
                for k, (c, value) in enumerate(zip(self.spec.columns, row, strict=True)):
                    self._convert(k, c, [value])
            except _BAD_VALUE as exc:
                shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
                problem = problem or f"column {c.name!r} got {shown} ({exc})"
                continue
            good += row
        return good, problem or "a batch failed to convert"

    def _convert(self, index: int, col: Column, values: list[Any]) -> Converted:
        kind = col.kind
        if kind == "cat":
            codes = self.codes[index]  # sparse columns come last, so indexes agree
            assert codes is not None
            return codes.encode(values)
        if kind == "code8":
            raw = bytes(values)
            if raw.translate(None, bytes(range(col.n_codes))):
                raise ValueError(f"code out of range 0..{col.n_codes - 1}")
            out = array("B")
            out.frombytes(raw)
            return out
        if kind == "bool":
            out = array("B")
            out.frombytes(bytes(map(bool, values)))
            return out
        if kind == "str":
            _check_str(values, col.name)
            return values
        if kind == "sparse":
            if values.count(None) != len(values):
                _check_str(values, col.name)
            return values
        return pack(TYPECODES[kind], values)

    def _store(self, converted: list[Converted], n: int) -> None:
        cap = self.capacity
        skip = n - cap if n > cap else 0
        nxt = self.next
        held = self.held
        first_row = self.total
        n_stored = len(self.stores)
        for store, values in zip(self.stores, converted[:n_stored], strict=True):
            _ring_write(store, values[skip:] if skip else values, nxt, held, cap)
        for c, values in zip(self.spec.columns[n_stored:], converted[n_stored:], strict=True):
            if values.count(None) != n:  # sparse: usually all None
                kept = self.sparse[c.name]
                kept.extend((first_row + k, v) for k, v in enumerate(values) if v is not None)
        self.total = first_row + n
        self.next = (nxt + (n - skip)) % cap
        oldest = self.total - self.held
        for kept in self.sparse.values():
            while kept and kept[0][0] < oldest:
                kept.popleft()
        self.tally.update(self, converted)
        for i, codes in enumerate(self.codes):
            if codes is not None and len(codes.values) > self._compact_at[i]:
                self._compact(i, codes)

    def _compact(self, index: int, codes: _Codes) -> None:
        store = self.stores[index]
        live = sorted(set(store) - {-1})
        values = [codes.values[k] for k in live]
        remap = dict.fromkeys(range(len(codes.values)), -1)
        remap.update(zip(live, range(len(live)), strict=True))
        remap[-1] = -1
        store[:] = array("i", map(remap.__getitem__, store))
        self.codes[index] = _Codes(values)
        self._compact_at[index] = max(COMPACT_MIN, 2 * len(values))

    def clear(self) -> None:
        """Forget every row and tally; rows being appended concurrently may survive."""
        with self.lock:
            self.pending.clear()
            self._reset()
            self.tally.restore({})

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self, names: Sequence[str] | None = None) -> TableSnapshot:
        """Commit pending rows and copy the columns ``names`` (all by default) under the lock."""
        wanted = set(self.spec.names if names is None else names)
        with self.lock:
            self._commit_locked()
            held = self.held
            columns: dict[str, Store] = {}
            categories: dict[str, list[str]] = {}
            for c, store, codes in zip(self._stored, self.stores, self.codes, strict=True):
                if c.name in wanted:
                    columns[c.name] = store[:]
                    if codes is not None:
                        categories[c.name] = list(codes.values)
            sparse = {k: list(v) for k, v in self.sparse.items() if k in wanted}
            return TableSnapshot(
                spec=self.spec,
                capacity=self.capacity,
                total=self.total,
                held=held,
                start=self.next if held == self.capacity else 0,
                columns=columns,
                categories=categories,
                sparse=sparse,
                tally=self.tally.state,
            )

    def tail(self, since: int) -> TableSnapshot:
        """Like :meth:`snapshot`, but only rows appended after the first ``since`` ever.

        Rows already overwritten are gone (``total - since - held`` of them).
        Copies only the rows it returns, so a recorder can take one every
        few seconds from a full 500,000-row ring cheaply.
        """
        with self.lock:
            self._commit_locked()
            held, cap = self.held, self.capacity
            keep = max(0, min(held, self.total - since))
            oldest = self.next if held == cap else 0
            first = (oldest + held - keep) % cap if held else 0
            columns: dict[str, Store] = {}
            categories: dict[str, list[str]] = {}
            for c, store, codes in zip(self._stored, self.stores, self.codes, strict=True):
                end = first + keep
                head: Any = store[first:end]
                columns[c.name] = head if end <= held else head + store[: end - held]
                if codes is not None:
                    categories[c.name] = list(codes.values)
            floor = self.total - keep
            sparse = {k: [p for p in v if p[0] >= floor] for k, v in self.sparse.items()}
            return TableSnapshot(
                spec=self.spec,
                capacity=cap,
                total=self.total,
                held=keep,
                start=0,
                columns=columns,
                categories=categories,
                sparse=sparse,
                tally=self.tally.state,
            )

    def truncate(self, total: int, tally: dict[str, Any]) -> bool:
        """Forget the rows appended after the first ``total`` and set the tally back to
        ``tally`` (its state then). False (nothing changed) if rows before ``total`` were
        already overwritten, or fewer than ``total`` were ever appended."""
        with self.lock:
            self._commit_locked()
            if self.held != self.total or total > self.total:
                return False
            for store in self.stores:
                del store[total:]
            for kept in self.sparse.values():
                while kept and kept[-1][0] >= total:
                    kept.pop()
            self.total = total
            self.next = total % self.capacity
            self.tally.restore(copy.deepcopy(tally))
            return True

    def restore_prefix(self, full: TableSnapshot, total: int, tally: dict[str, Any]) -> bool:
        """Hold the first ``total`` rows of ``full`` (an earlier snapshot of this ring that
        never overflowed) and ``tally``; False (nothing changed) if it cannot."""
        if full.held != full.total or total > full.total or full.start:
            return False
        self.restore(
            total=total,
            columns={c.name: full.columns[c.name][:total] for c in self._stored},
            categories={name: list(values) for name, values in full.categories.items()},
            sparse={
                name: [p for p in pairs if p[0] < total] for name, pairs in full.sparse.items()
            },
            tally=copy.deepcopy(tally),
        )
        return True

    def restore(
        self,
        *,
        total: int,
        columns: dict[str, Store],
        categories: dict[str, list[str]],
        sparse: dict[str, list[tuple[int, str]]],
        tally: dict[str, Any],
    ) -> None:
        """Load rows in arrival order (oldest first), e.g. from a parquet file."""
        with self.lock:
            self.pending.clear()
            self._reset()
            held = len(columns[self._stored[0].name])
            if held > self.capacity or total < held:
                raise ValueError(
                    f"{self.spec.name}: {held} rows do not fit {self.capacity}/{total}"
                )
            for i, c in enumerate(self._stored):
                values = columns[c.name]
                if len(values) != held:
                    raise ValueError(f"{self.spec.name}.{c.name}: {len(values)} rows, not {held}")
                self.stores[i] = values
                if c.kind == "cat":
                    self.codes[i] = _Codes(categories[c.name])
            for name, pairs in sparse.items():
                self.sparse[name].extend(pairs)
            self.total = total
            self.next = held % self.capacity
            self.tally.restore(tally)


def _ring_write(store: Store, values: Converted, nxt: int, held: int, cap: int) -> None:
    """Write ``values`` (at most ``cap`` rows) at storage index ``nxt``, wrapping around."""
    m = len(values)
    if held < cap:  # still growing: nxt == held
        room = cap - held
        if m <= room:
            store.extend(values)
            return
        store.extend(values[:room])
        store[0 : m - room] = values[room:]  # type: ignore[assignment]
        return
    first = min(m, cap - nxt)
    store[nxt : nxt + first] = values[:first] if first < m else values  # type: ignore[assignment]
    if first < m:
        store[0 : m - first] = values[first:]  # type: ignore[assignment]
