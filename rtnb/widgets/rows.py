"""``TableFeed``: a topic's store as snapshots and row diffs for a ``StreamTable``.

Runs on the runtime thread (see :mod:`rtnb.widgets.feed`). Each tick takes
from its :class:`~rtnb.client.source.RowCursor` (``source.open_rows(topic)``)
the ids changed since the last take, however many events touched them, and
sends only those rows:
10,000 events on 50 entities in one tick cost one 50-row diff.

Wire format (``content`` is small JSON; rows travel in one binary buffer of
JSON bytes, encoded by msgspec, which is much cheaper than the kernel's
``json_clean`` over thousands of rows)::

    content  {"t": "snapshot"|"diff", "seq": n, "columns"?: [...], "overflow"?: n,
              "fresh": {...}, "total"?: n, "rejected"?: [{id, status, code, error, patch}]}
    buffer   {"u": [[entity_id, flags, v0, v1, ...], ...],
              "s": [[entity_id, flags, i0, v0, i1, v1, ...], ...], "d": [entity_id, ...]}

``flags`` bit 0 is "pending" (an optimistic mutation is unconfirmed); bit
``i + 1`` says action ``i`` applies to the row. Values follow ``columns``; a
row shorter than ``columns`` lacks the trailing fields. A row with values in
fewer than half the columns goes sparse (``s``: column index, value pairs), so
4,000 entities with one distinct field each cost O(fields), not O(entities x
columns). A snapshot replaces everything the browser holds.

Bounded traffic: discovered columns stop at ``max_columns`` (default
:data:`DEFAULT_MAX_COLUMNS`); later fields of a row go, as one object, into the
last column, :data:`OVERFLOW_COLUMN`, and ``overflow`` says how many field names
were folded (the header says so). A message's rows stop at ``max_message_bytes``
(:data:`DEFAULT_MAX_MESSAGE_BYTES`); the rows left over go in the next ticks'
diffs (a snapshot's ``total`` counts them all).

Rejections come from the connection's mutation ledger: each tick reads the
mutations resolved since the last one (:class:`ResolutionCursor`), and those
of this topic that were rejected or timed out go out together with the row's
rollback (id, error and the patch that was undone), so the browser can show
the error on the optimistic values before rolling back — even when the
mutation was created and rejected between two ticks.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import contains
from typing import TYPE_CHECKING, Any, Final, cast

from ..client.source import PENDING_FIELD, MutationRecord, RowCursor
from .budget import DEFAULT_FPS, MessageBudget
from .feed import Feed, Message, Scheduler, Send, encode_buffer
from .status import same_freshness, topic_payload

if TYPE_CHECKING:
    from ..client.source import ConnectionState

#: Columns a table discovers at most: 200 (a person reads a few dozen).
DEFAULT_MAX_COLUMNS: Final = 200
#: Bytes of rows one widget message carries at most: 1 MiB (the rest follows in the
#: next ticks); Jupyter sends each message whole over the kernel's one IOPub socket.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024
#: The column holding a row's fields past ``max_columns`` (one object).
OVERFLOW_COLUMN: Final = "_overflow"

#: Row flag: an optimistic mutation on this row is unconfirmed.
FLAG_PENDING: Final = 1
#: Most actions a table offers per row (each takes one flag bit): 16.
MAX_ACTIONS: Final = 16
_FAILED: Final = frozenset({"rejected", "timed_out", "refused", "cancelled"})


def _dense_rows(
    ids: Sequence[str], views: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> list[Any]:
    """``(eid, flags, *values)`` of each view (dicts; TypeError otherwise), as
    :meth:`TableFeed._row` makes a dense row without actions or overflow, column by
    column in C loops (``dict.get`` mapped over the views), the rows zipped: about half
    the cost of a row at a time (issue 22). The flag's field is looked up per row only
    when a view holds it."""
    get = dict.get
    if any(map(contains, views, repeat(PENDING_FIELD))):
        flags: Iterable[int] = [FLAG_PENDING if view.get(PENDING_FIELD) else 0 for view in views]
    else:
        flags = repeat(0)
    values = [map(get, views, repeat(c)) for c in columns]  # type: ignore[arg-type]
    return list(zip(ids, flags, *values, strict=False))  # flags may repeat without end


@dataclass(frozen=True, slots=True)
class Action:
    """A row button that applies ``patch`` optimistically, shown where ``when`` holds.

    ``when`` maps fields to required values (``{"status": "open"}``); rows
    match when every field equals its value. ``Action("Acknowledge",
    {"status": "ack"}, when={"status": "open"})``.
    """

    label: str
    patch: Mapping[str, Any]
    when: Mapping[str, Any] = field(default_factory=dict)

    def applies(self, view: Mapping[str, Any]) -> bool:
        return all(view.get(k) == v for k, v in self.when.items())


class TableFeed(Feed):
    """Snapshots and changed-row diffs of one topic (construct on the runtime thread).

    ``rows``: the topic's cursor (``source.open_rows(topic)``), closed with the feed."""

    def __init__(
        self,
        scheduler: Scheduler,
        send: Send,
        *,
        rows: RowCursor,
        connection_state: Callable[[], ConnectionState],
        resolutions: Callable[[], list[MutationRecord]] = list,
        columns: Sequence[str] | None = None,
        max_rows: int | None = None,
        actions: Sequence[Action] = (),
        fps: float = DEFAULT_FPS,
        budget: MessageBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        max_columns: int = DEFAULT_MAX_COLUMNS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(scheduler, send, fps=fps, budget=budget, clock=clock)
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be a positive int or None, got {max_rows!r}")
        if len(actions) > MAX_ACTIONS:
            raise ValueError(f"at most {MAX_ACTIONS} actions per table, got {len(actions)}")
        self.rows = rows
        self._connection_state = connection_state
        self._resolutions = resolutions
        self.fixed_columns = columns is not None
        self.columns: list[str] = list(columns or ())
        self._colset = set(self.columns)
        self.max_columns = max_columns
        self.max_message_bytes = max_message_bytes
        #: field names folded into OVERFLOW_COLUMN
        self.overflow: set[str] = set()
        #: ids whose rows did not fit the last message (sent next, in order)
        self._backlog: dict[str, None] = {}
        self._column_index: dict[str, int] = {}
        self._columns_sent: list[str] | None = None
        self.max_rows = max_rows
        self._recent: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.actions = tuple(actions)
        self.wall = wall
        self._fresh_sent: dict[str, Any] | None = None
        self._fresh_now: dict[str, Any] | None = None
        self._unrecoverable = rows.view().unrecoverable
        self._gap_at: float | None = None
        #: rows sent, over all messages (for tests and benchmarks)
        self.rows_sent = 0

    # -- freshness ------------------------------------------------------------------

    def freshness(self) -> dict[str, Any]:
        wall = self.wall()
        ts = self.rows.view()
        if ts.unrecoverable > self._unrecoverable:
            self._unrecoverable = ts.unrecoverable
            self._gap_at = wall
        return topic_payload(ts, self._connection_state(), wall, self._gap_at)

    def dirty(self, now: float) -> bool:
        self._fresh_now = None
        if self.rows.changed or self._backlog:
            return True
        self._fresh_now = self.freshness()
        return not same_freshness(self._fresh_sent, self._fresh_now)

    def _take_fresh(self) -> dict[str, Any]:
        fresh = self._fresh_now or self.freshness()
        self._fresh_now = None
        self._fresh_sent = fresh
        return fresh

    # -- rows -------------------------------------------------------------------------

    def _discover(self, views: Iterable[Mapping[str, Any]]) -> None:
        if self.fixed_columns:
            return
        colset, columns, overflow = self._colset, self.columns, self.overflow
        if isinstance(views, Sequence) and all(map(colset.issuperset, views)):
            return  # no new field in any view (the common case, in one C loop)
        for view in views:
            if view.keys() <= colset:  # the common case: no new field (one C-level check)
                continue
            for key in view:
                if key not in colset and key != PENDING_FIELD and key not in overflow:
                    if len(columns) < self.max_columns:
                        colset.add(key)
                        columns.append(key)
                    else:
                        if not overflow:
                            columns.append(OVERFLOW_COLUMN)
                            colset.add(OVERFLOW_COLUMN)
                        overflow.add(key)

    def _row(self, eid: str, view: Mapping[str, Any]) -> tuple[bool, tuple[Any, ...]]:
        """``(sparse, row)``: dense ``(eid, flags, v...)`` or sparse ``(eid, flags, i, v, ...)``.

        Rows are tuples (JSON arrays, as lists would be): a tuple of strings and numbers
        is untracked by the garbage collector at its first collection, so thousands of
        rows held until encoded are not promoted to the oldest generation, where each
        tick's rows used to trigger a full collection of the kernel's heap (issue 22:
        ~2 µs per event at 100k events/s on 10,000 entities)."""
        flags = FLAG_PENDING if view.get(PENDING_FIELD) else 0
        for i, action in enumerate(self.actions):
            if action.applies(view):
                flags |= 2 << i
        columns = self.columns
        extra = None
        if self.overflow:
            colset = self._colset
            extra = {k: v for k, v in view.items() if k not in colset and k != PENDING_FIELD}
        if 2 * len(view) < len(columns):
            index = self._index()
            row: list[Any] = [eid, flags]
            for k, v in view.items():
                at = index.get(k)
                if at is not None and k != OVERFLOW_COLUMN:
                    row += (at, v)
            if extra:
                row += (index[OVERFLOW_COLUMN], extra)
            return True, tuple(row)
        get = view.get
        values = [get(c) for c in columns]
        if extra is not None:
            values[-1] = extra or None
        return False, (eid, flags, *values)

    def _index(self) -> dict[str, int]:
        if len(self._column_index) != len(self.columns):
            self._column_index = {c: i for i, c in enumerate(self.columns)}
        return self._column_index

    def _encode_rows(
        self, ids: Sequence[str], views: Sequence[Mapping[str, Any]], deletes: Sequence[str]
    ) -> tuple[bytes, int]:
        """The buffer of the rows of ``ids`` (their ``views``, in step) up to
        ``max_message_bytes``; the ids left over go to the backlog. Returns ``(buffer, rows)``.

        All rows are encoded in one call when they fit (the common case; the bytes are
        those of the row-by-row path below, which runs only when they do not). Ids and
        views travel as two lists, never as ``(id, view)`` pairs: a tuple holding a dict
        stays tracked by the garbage collector, and a tick's thousands of pairs, alive
        until encoded, were promoted to its oldest generation (see :meth:`_row`)."""
        dense_rows, sparse_rows = self._rows(ids, views)
        dense_data, sparse_data = encode_buffer(dense_rows), encode_buffer(sparse_rows)
        # Row by row, the rows' sizes plus one separator each: len(data) - 1 per
        # non-empty list (``[a,b]`` is a and b plus 3 bytes); all fit if that sum - 1 does.
        size = (len(dense_data) - 1 if dense_rows else 0) + (
            len(sparse_data) - 1 if sparse_rows else 0
        )
        if size - 1 <= self.max_message_bytes:
            self.rows_sent += len(ids)
            buffer = (
                b'{"u":' + dense_data + b',"s":' + sparse_data + b',"d":'
                + encode_buffer(list(deletes)) + b"}"
            )  # fmt: skip
            return buffer, len(ids)
        return self._encode_rows_bounded(ids, views, deletes)

    def _rows(
        self, ids: Sequence[str], views: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Any], list[Any]]:
        """The rows of ``ids`` (``views`` in step) as dense and sparse rows (see
        :meth:`_row`), in order."""
        dense: list[Any] = []
        sparse: list[Any] = []
        if not ids:
            return dense, sparse
        columns = self.columns
        if self.actions or self.overflow:
            for eid, view in zip(ids, views, strict=True):
                is_sparse, row = self._row(eid, view)
                (sparse if is_sparse else dense).append(row)
            return dense, sparse
        width = len(columns)
        pending = PENDING_FIELD
        flag = FLAG_PENDING
        if 2 * min(map(len, views)) >= width:  # every row dense (the common case)
            try:
                return _dense_rows(ids, views, columns), sparse
            except TypeError:  # a view that is not a dict (a custom store's): row by row
                pass
        for eid, view in zip(ids, views, strict=True):  # _row without actions or overflow
            if 2 * len(view) < width:
                sparse.append(self._row(eid, view)[1])
            else:
                get = view.get
                dense.append((eid, flag if get(pending) else 0, *map(get, columns)))
        return dense, sparse

    def _encode_rows_bounded(
        self, ids: Sequence[str], views: Sequence[Mapping[str, Any]], deletes: Sequence[str]
    ) -> tuple[bytes, int]:
        """:meth:`_encode_rows` row by row: stop at ``max_message_bytes``."""
        dense: list[bytes] = []
        sparse: list[bytes] = []
        size = 0
        sent = 0
        for k, (eid, view) in enumerate(zip(ids, views, strict=True)):
            is_sparse, row = self._row(eid, view)
            data = encode_buffer(row)
            if size + len(data) > self.max_message_bytes and sent:
                for later in ids[k:]:
                    self._backlog[later] = None
                break
            (sparse if is_sparse else dense).append(data)
            size += len(data) + 1
            sent += 1
        self.rows_sent += sent
        buffer = (
            b'{"u":[' + b",".join(dense) + b'],"s":[' + b",".join(sparse) + b'],"d":'
            + encode_buffer(list(deletes)) + b"}"
        )  # fmt: skip
        return buffer, sent

    def _failures(self) -> list[dict[str, Any]]:
        """This topic's mutations rejected or timed out since the last message."""
        out: list[dict[str, Any]] = []
        topic = self.rows.name
        for rec in self._resolutions():
            if rec.topic == topic and rec.status in _FAILED:
                out.append(
                    {
                        "id": rec.entity_id,
                        "status": rec.status,
                        "code": rec.error_code,
                        "error": rec.error or rec.status.replace("_", " "),
                        "patch": dict(rec.patch),
                    }
                )
        return out

    def _columns_changed(self) -> bool:
        return self._columns_sent != self.columns

    def _columns_content(self, content: dict[str, Any]) -> None:
        self._columns_sent = list(self.columns)
        content["columns"] = self._columns_sent
        if self.overflow:
            content["overflow"] = len(self.overflow)

    # -- messages ---------------------------------------------------------------------------

    def snapshot(self, now: float) -> Message:
        self.rows.take()
        rejected = self._failures()
        rows = self.rows.rows()
        ids: list[str] = list(rows)
        if self.max_rows is not None:
            recent = self._recent
            keep = [eid for eid in recent if eid in rows]
            older = [eid for eid in rows if eid not in recent]
            ids = (older + keep)[-self.max_rows :]
            self._recent = collections.OrderedDict.fromkeys(ids)
        views = list(map(rows.__getitem__, ids))
        self._discover(views)
        self._backlog = {}
        buffer, _ = self._encode_rows(ids, views, [])
        content: dict[str, Any] = {"t": "snapshot", "fresh": self._take_fresh()}
        self._columns_content(content)
        content["total"] = len(ids)
        if rejected:
            content["rejected"] = rejected
        return content, [buffer]

    def diff(self, now: float) -> Message:
        reset, changed = self.rows.take()
        if reset:
            return self.snapshot(now)
        if self._backlog:  # rows that did not fit the last message go first
            backlog, self._backlog = self._backlog, {}
            changed = [*backlog, *(eid for eid in changed if eid not in backlog)]
        rejected = self._failures()
        ids: list[str] = list(changed)
        found = list(map(self.rows.reader(), ids))  # one C loop; None: deleted
        deletes: list[str] = []
        views: list[Mapping[str, Any]]
        if None in found:
            deletes = [eid for eid, v in zip(ids, found, strict=True) if v is None]
            ids = [eid for eid, v in zip(ids, found, strict=True) if v is not None]
            views = [v for v in found if v is not None]
        else:
            views = cast("list[Mapping[str, Any]]", found)
        if self.max_rows is not None:
            recent = self._recent
            for eid in ids:
                recent[eid] = None
                recent.move_to_end(eid)
            for eid in deletes:
                recent.pop(eid, None)
            while len(recent) > self.max_rows:
                deletes.append(recent.popitem(last=False)[0])
            views = [v for eid, v in zip(ids, views, strict=True) if eid in recent]
            ids = [eid for eid in ids if eid in recent]
        self._discover(views)
        buffer, _ = self._encode_rows(ids, views, deletes)
        content: dict[str, Any] = {"t": "diff", "fresh": self._take_fresh()}
        if self._columns_changed():
            self._columns_content(content)
        if rejected:
            content["rejected"] = rejected
        return content, [buffer]

    def _teardown(self) -> None:
        self.rows.close()
