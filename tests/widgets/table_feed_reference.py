# mypy: disable-error-code="override"
"""TableFeed's row-building methods as they were before issue 22's third pass (rows as
lists, ``(id, view)`` pairs): the reference the new ones are checked against
(``test_widget_feed.py``: the same messages, byte for byte). Copied verbatim."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rtnb.client.source import PENDING_FIELD
from rtnb.widgets.feed import Message, encode_buffer
from rtnb.widgets.rows import FLAG_PENDING, OVERFLOW_COLUMN, TableFeed


class ReferenceTableFeed(TableFeed):
    """A :class:`TableFeed` whose rows are built the old way."""

    def _row(self, eid: str, view: Mapping[str, Any]) -> tuple[bool, list[Any]]:
        """``(sparse, row)``: dense ``[eid, flags, v...]`` or sparse ``[eid, flags, i, v, ...]``."""
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
            return True, row
        get = view.get
        values = [get(c) for c in columns]
        if extra is not None:
            values[-1] = extra or None
        return False, [eid, flags, *values]

    def _encode_rows(
        self, pairs: Sequence[tuple[str, Mapping[str, Any]]], deletes: Sequence[str]
    ) -> tuple[bytes, int]:
        """The buffer of ``pairs``' rows up to ``max_message_bytes``; the ids left over
        go to the backlog. Returns ``(buffer, rows)``.

        All rows are encoded in one call when they fit (the common case; the bytes are
        those of the row-by-row path below, which runs only when they do not)."""
        dense_rows, sparse_rows = self._rows(pairs)
        dense_data, sparse_data = encode_buffer(dense_rows), encode_buffer(sparse_rows)
        # Row by row, the rows' sizes plus one separator each: len(data) - 1 per
        # non-empty list (``[a,b]`` is a and b plus 3 bytes); all fit if that sum - 1 does.
        size = (len(dense_data) - 1 if dense_rows else 0) + (
            len(sparse_data) - 1 if sparse_rows else 0
        )
        if size - 1 <= self.max_message_bytes:
            self.rows_sent += len(pairs)
            buffer = (
                b'{"u":' + dense_data + b',"s":' + sparse_data + b',"d":'
                + encode_buffer(list(deletes)) + b"}"
            )  # fmt: skip
            return buffer, len(pairs)
        return self._encode_rows_bounded(pairs, deletes)

    def _rows(self, pairs: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[Any], list[Any]]:
        """``pairs`` as dense and sparse rows (see :meth:`_row`), in order."""
        dense: list[Any] = []
        sparse: list[Any] = []
        columns = self.columns
        if self.actions or self.overflow:
            for eid, view in pairs:
                is_sparse, row = self._row(eid, view)
                (sparse if is_sparse else dense).append(row)
            return dense, sparse
        width = len(columns)
        pending = PENDING_FIELD
        for eid, view in pairs:  # _row without actions or overflow, inlined
            if 2 * len(view) < width:
                sparse.append(self._row(eid, view)[1])
            else:
                get = view.get
                dense.append([eid, FLAG_PENDING if get(pending) else 0, *map(get, columns)])
        return dense, sparse

    def _encode_rows_bounded(
        self, pairs: Sequence[tuple[str, Mapping[str, Any]]], deletes: Sequence[str]
    ) -> tuple[bytes, int]:
        """:meth:`_encode_rows` row by row: stop at ``max_message_bytes``."""
        dense: list[bytes] = []
        sparse: list[bytes] = []
        size = 0
        sent = 0
        for k, (eid, view) in enumerate(pairs):
            is_sparse, row = self._row(eid, view)
            data = encode_buffer(row)
            if size + len(data) > self.max_message_bytes and sent:
                for later, _ in pairs[k:]:
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

    def snapshot(self, now: float) -> Message:
        self.rows.take()
        rejected = self._failures()
        views = self.rows.rows()
        ids: Iterable[str] = views
        if self.max_rows is not None:
            recent = self._recent
            keep = [eid for eid in recent if eid in views]
            older = [eid for eid in views if eid not in recent]
            chosen = (older + keep)[-self.max_rows :]
            self._recent = recent = collections.OrderedDict.fromkeys(chosen)
            ids = chosen
        selected = [(eid, views[eid]) for eid in ids]
        self._discover(v for _, v in selected)
        self._backlog = {}
        buffer, _ = self._encode_rows(selected, [])
        content: dict[str, Any] = {"t": "snapshot", "fresh": self._take_fresh()}
        self._columns_content(content)
        content["total"] = len(selected)
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
        view = self.rows.reader()
        upserts: list[tuple[str, Mapping[str, Any]]] = []
        deletes: list[str] = []
        for eid in changed:
            v = view(eid)
            if v is None:
                deletes.append(eid)
            else:
                upserts.append((eid, v))
        if self.max_rows is not None:
            recent = self._recent
            for eid, _ in upserts:
                recent[eid] = None
                recent.move_to_end(eid)
            for eid in deletes:
                recent.pop(eid, None)
            while len(recent) > self.max_rows:
                deletes.append(recent.popitem(last=False)[0])
            upserts = [(eid, v) for eid, v in upserts if eid in recent]
        self._discover(v for _, v in upserts)
        buffer, _ = self._encode_rows(upserts, deletes)
        content: dict[str, Any] = {"t": "diff", "fresh": self._take_fresh()}
        if self._columns_changed():
            self._columns_content(content)
        if rejected:
            content["rejected"] = rejected
        return content, [buffer]
