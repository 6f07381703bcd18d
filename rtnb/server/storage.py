"""Where topic logs live: a small interface, an in-memory store, a SQLite store.

One *stream* per (tenant, topic): an epoch, an append-only run of records with
contiguous sequences (trimmed from the front by retention), and the entities'
current states (so state survives even when the events that built it were
trimmed). A distributed backend implements :class:`LogStorage` and nothing else
changes.

:class:`SQLiteStorage` keeps the retained window in memory, like
:class:`MemoryStorage`, and writes behind: appends are buffered and committed by
``flush()`` (the server flushes every :data:`FLUSH_INTERVAL` seconds and on
shutdown), in one transaction, so a burst of thousands of events costs one
commit rather than thousands.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import itertools
import os
import sqlite3
from typing import Any, Final

import msgspec

__all__ = ["FLUSH_INTERVAL", "Key", "LogRecord", "LogStorage", "MemoryStorage", "SQLiteStorage"]

#: Seconds between write-behind commits of :class:`SQLiteStorage`.
FLUSH_INTERVAL: Final = 0.2

Key = tuple[str, str]  # (tenant, topic)
Entities = dict[str, tuple[dict[str, Any], int]]  # entity_id -> (state, sequence)


class LogRecord:
    """One logged event: its sequence and the encoded ``event`` frame sent to clients.

    The frame is encoded once, when the event is appended, and the same ``str``
    is sent to every subscriber on every transport.
    """

    __slots__ = ("epoch", "sequence", "text", "token", "topic")

    def __init__(self, topic: str, epoch: bytes, sequence: int, token: str, text: str) -> None:
        self.topic = topic
        self.epoch = epoch
        self.sequence = sequence
        self.token = token  # the event's replay token, also inside ``text``
        self.text = text

    def __repr__(self) -> str:  # the text carries a replay token: keep it out of reprs
        return f"LogRecord(topic={self.topic!r}, sequence={self.sequence})"


class LogStorage(abc.ABC):
    """The storage interface of topic logs. All methods are synchronous and fast."""

    @abc.abstractmethod
    def streams(self) -> list[Key]:
        """Every stream that exists."""

    @abc.abstractmethod
    def epoch(self, key: Key) -> bytes | None:
        """The stream's epoch, or None if the stream does not exist."""

    @abc.abstractmethod
    def reset(self, key: Key, epoch: bytes) -> None:
        """Create the stream, or empty it, under a new epoch; sequences restart at 1."""

    @abc.abstractmethod
    def append(
        self, key: Key, record: LogRecord, entity_id: str, state: dict[str, Any] | None
    ) -> None:
        """Append ``record`` (its sequence is latest + 1) and store the entity's new state."""

    @abc.abstractmethod
    def read(self, key: Key, after: int, limit: int | None = None) -> list[LogRecord]:
        """Retained records with sequence > ``after``, ascending, at most ``limit``."""

    @abc.abstractmethod
    def bounds(self, key: Key) -> tuple[int, int]:
        """``(first retained sequence, latest sequence)``; ``(latest + 1, latest)`` if none kept."""

    @abc.abstractmethod
    def trim(self, key: Key, keep: int) -> None:
        """Drop the oldest records so that at most ``keep`` remain."""

    @abc.abstractmethod
    def entities(self, key: Key) -> Entities:
        """A copy of every entity's current state and the sequence that last changed it."""

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make everything appended so far durable (a no-op in memory)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""


@dataclasses.dataclass
class _Stream:
    epoch: bytes
    latest: int = 0
    records: collections.deque[LogRecord] = dataclasses.field(default_factory=collections.deque)
    entities: Entities = dataclasses.field(default_factory=dict)


class MemoryStorage(LogStorage):
    """Streams in memory; the default. Nothing survives the process."""

    def __init__(self) -> None:
        self._streams: dict[Key, _Stream] = {}

    def streams(self) -> list[Key]:
        return list(self._streams)

    def epoch(self, key: Key) -> bytes | None:
        stream = self._streams.get(key)
        return None if stream is None else stream.epoch

    def reset(self, key: Key, epoch: bytes) -> None:
        self._streams[key] = _Stream(epoch=epoch)

    def append(
        self, key: Key, record: LogRecord, entity_id: str, state: dict[str, Any] | None
    ) -> None:
        stream = self._streams[key]
        if record.sequence != stream.latest + 1:
            raise ValueError(
                f"stream {key!r}: appending sequence {record.sequence} after {stream.latest}"
            )
        stream.records.append(record)
        stream.latest = record.sequence
        if state is None:
            stream.entities.pop(entity_id, None)
        else:
            stream.entities[entity_id] = (state, record.sequence)

    def read(self, key: Key, after: int, limit: int | None = None) -> list[LogRecord]:
        stream = self._streams[key]
        records = stream.records
        if not records:
            return []
        first = records[0].sequence
        skip = max(0, after + 1 - first)
        if skip >= len(records):
            return []
        stop = len(records) if limit is None else min(len(records), skip + limit)
        if skip > len(records) // 2:  # walk from the nearer end of the deque
            tail = list(itertools.islice(reversed(records), len(records) - skip))
            tail.reverse()
            return tail[: stop - skip]
        return list(itertools.islice(records, skip, stop))

    def bounds(self, key: Key) -> tuple[int, int]:
        stream = self._streams[key]
        first = stream.records[0].sequence if stream.records else stream.latest + 1
        return first, stream.latest

    def trim(self, key: Key, keep: int) -> None:
        records = self._streams[key].records
        while len(records) > keep:
            records.popleft()

    def entities(self, key: Key) -> Entities:
        return dict(self._streams[key].entities)


_SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS streams (
    tenant TEXT NOT NULL, topic TEXT NOT NULL, epoch BLOB NOT NULL, latest INTEGER NOT NULL,
    PRIMARY KEY (tenant, topic)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    tenant TEXT NOT NULL, topic TEXT NOT NULL, seq INTEGER NOT NULL,
    token TEXT NOT NULL, frame TEXT NOT NULL,
    PRIMARY KEY (tenant, topic, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    tenant TEXT NOT NULL, topic TEXT NOT NULL, entity_id TEXT NOT NULL,
    state TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, topic, entity_id)
) WITHOUT ROWID;
"""


class SQLiteStorage(MemoryStorage):
    """Streams persisted in ``DIR/rtnb.sqlite3`` (stdlib sqlite3), cached in memory.

    A restart on the same directory restores every stream with its epoch, its
    retained events and its entities, so replay tokens minted before the restart
    still work (given the same secret; see ``handle.py``).
    """

    FILENAME: Final = "rtnb.sqlite3"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(os.fspath(directory), self.FILENAME)
        # The server creates the store in one thread and uses it on its loop thread.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._events: list[tuple[str, str, int, str, str]] = []
        self._states: dict[tuple[str, str, str], tuple[dict[str, Any] | None, int]] = {}
        self._trims: dict[Key, int] = {}
        self._dirty: set[Key] = set()
        self._closed = False
        self._load()

    def _load(self) -> None:
        db = self._db
        for tenant, topic, epoch, latest in db.execute(
            "SELECT tenant, topic, epoch, latest FROM streams"
        ):
            stream = _Stream(epoch=bytes(epoch), latest=latest)
            for seq, token, frame in db.execute(
                "SELECT seq, token, frame FROM events WHERE tenant=? AND topic=? ORDER BY seq",
                (tenant, topic),
            ):
                stream.records.append(LogRecord(topic, stream.epoch, seq, token, frame))
            for entity_id, state, seq in db.execute(
                "SELECT entity_id, state, seq FROM entities WHERE tenant=? AND topic=?",
                (tenant, topic),
            ):
                stream.entities[entity_id] = (msgspec.json.decode(state), seq)
            self._streams[(tenant, topic)] = stream

    def reset(self, key: Key, epoch: bytes) -> None:
        self.flush()
        super().reset(key, epoch)
        tenant, topic = key
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM events WHERE tenant=? AND topic=?", key)
            self._db.execute("DELETE FROM entities WHERE tenant=? AND topic=?", key)
            self._db.execute(
                "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, 0)", (tenant, topic, epoch)
            )

    def append(
        self, key: Key, record: LogRecord, entity_id: str, state: dict[str, Any] | None
    ) -> None:
        super().append(key, record, entity_id, state)
        tenant, topic = key
        self._events.append((tenant, topic, record.sequence, record.token, record.text))
        self._states[(tenant, topic, entity_id)] = (state, record.sequence)
        self._dirty.add(key)

    def trim(self, key: Key, keep: int) -> None:
        super().trim(key, keep)
        self._trims[key] = self.bounds(key)[0]

    def flush(self) -> None:
        if self._closed or not (self._events or self._states or self._trims):
            return
        upserts = [
            (t, p, e, msgspec.json.encode(s).decode(), q)
            for (t, p, e), (s, q) in self._states.items()
            if s is not None
        ]
        deletes = [(t, p, e) for (t, p, e), (s, _) in self._states.items() if s is None]
        latest = [(self._streams[k].latest, *k) for k in self._dirty]
        db = self._db
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", self._events)
            db.executemany("INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?)", upserts)
            db.executemany(
                "DELETE FROM entities WHERE tenant=? AND topic=? AND entity_id=?", deletes
            )
            db.executemany("UPDATE streams SET latest=? WHERE tenant=? AND topic=?", latest)
            db.executemany(
                "DELETE FROM events WHERE tenant=? AND topic=? AND seq<?",
                [(*k, first) for k, first in self._trims.items()],
            )
        self._events.clear()
        self._states.clear()
        self._trims.clear()
        self._dirty.clear()

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._db.close()
