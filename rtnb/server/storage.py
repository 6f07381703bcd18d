"""Where topic logs live: a small interface, an in-memory store, a SQLite store.

One *stream* per (tenant, topic): an epoch, an append-only run of records with
contiguous sequences (trimmed from the front by retention), and the entities'
current states (so state survives even when the events that built it were
trimmed). A distributed backend implements :class:`LogStorage` and nothing else
changes.

:class:`SQLiteStorage` keeps the retained window in memory, like
:class:`MemoryStorage`, and buffers appends; ``take()`` hands the buffer over
and ``write()`` commits it in one transaction. With ``fsync="always"`` (the
default) the server's committer does that for every group of appends before it
acknowledges or fans out any of them (group commit, see ``docs/durability.md``);
with ``fsync="never"`` (write-behind) the server flushes every
:data:`FLUSH_INTERVAL` seconds instead, and a crash loses the last moments —
which the next start detects and answers with new epochs.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import itertools
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

from ..protocol.errors import ServerStopped
from .idempotency import Applied, Scope

logger = logging.getLogger("rtnb.server")

#: Seconds between write-behind commits of :class:`SQLiteStorage` (``fsync="never"``).
FLUSH_INTERVAL: Final = 0.2

Fsync = Literal["always", "never"]
#: ``always``: acknowledge only what is committed and fsynced (group commit; the default).
#: ``never``: write behind every :data:`FLUSH_INTERVAL` s; a crash loses recent events.
FSYNC_MODES: Final = ("always", "never")

Key = tuple[str, str]  # (tenant, topic)
Entities = dict[str, tuple[dict[str, Any], int]]  # entity_id -> (state, sequence)


class LogRecord(msgspec.Struct, gc=False, eq=False):
    """One logged event: its sequence and the encoded ``event`` frame sent to clients.

    The frame is encoded once, when the event is appended, and the same ``str``
    is sent to every subscriber on every transport.

    A ``msgspec.Struct`` without garbage-collector tracking (``gc=False``): its fields are
    strings, bytes and an int, so it can never be part of a reference cycle, and a log
    retains up to ``retention`` of them — as tracked objects (a plain class) every full
    collection walked them all, ~1/3 of the server loop's time at 100k events/s (issue 22).
    Built in C (~0.07 µs, a plain class with ``__slots__`` ~0.34); compared by identity.
    """

    topic: str
    epoch: bytes
    sequence: int
    token: str  # the event's replay token, also inside ``text``
    text: str

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

    def append_many(
        self,
        key: Key,
        records: list[LogRecord],
        entity_ids: list[str],
        states: list[dict[str, Any] | None],
    ) -> None:
        """:meth:`append` of each record in order (a store may do it in one step)."""
        for record, entity_id, state in zip(records, entity_ids, states, strict=True):
            self.append(key, record, entity_id, state)

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

    #: True when ``take``/``write`` make appends durable before they are acknowledged.
    durable: bool = False
    #: True when ``remember`` stores idempotency keys with the events (SQLite).
    keeps_keys: bool = False
    #: True when the store assigns sequences itself (Redis, shared by several gateways):
    #: ``append`` then mirrors an event the store already committed (``redis_store.py``).
    sequenced: bool = False

    def take(self) -> object | None:
        """Hand over what was appended since the last ``take`` for ``write`` (on the loop).

        None when acknowledging need not wait for a write (memory, write-behind).
        """
        return None

    def write(self, pending: object) -> None:  # noqa: B027 - optional hook
        """Commit what ``take`` handed over, durably; may run in a worker thread."""

    def take_loaded(self, key: Key) -> list[tuple[int, bytes]]:
        """Events a sequenced store loaded for ``key``, as ``(sequence, body)``."""
        return []

    def set_records(self, key: Key, records: list[LogRecord]) -> None:
        """Replace the retained records (a mirror loaded from a sequenced store)."""
        raise NotImplementedError

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make everything appended so far durable (a no-op in memory)."""

    def remember(self, scope: Scope, name: str, applied: Applied, at: float) -> None:  # noqa: B027
        """Store an idempotency key with the event appended just before (same transaction).

        A no-op in memory (the server's :class:`~rtnb.server.idempotency.Remembered` is all
        there is); SQLite writes it in the transaction that writes the event.
        """

    def remembered(self, since: float) -> list[tuple[Scope, str, Applied, float]]:
        """Idempotency keys stored at or after ``since`` (unix s), oldest first."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""


@dataclasses.dataclass
class _Stream:
    epoch: bytes
    latest: int = 0
    records: collections.deque[LogRecord] = dataclasses.field(default_factory=collections.deque)
    # Each entity's state and sequence, in two maps: a ``(state, sequence)`` tuple per
    # event would be a container the garbage collector tracks (a tuple holding a dict is
    # never untracked) and, living until the entity's next event, ages into the oldest
    # generation — one full collection every few ten thousand events at 100k/s (issue 22).
    states: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    sequences: dict[str, int] = dataclasses.field(default_factory=dict)
    # Set by :meth:`MemoryStorage.share`: the entities as appended come from the topic log
    # (which holds them anyway), and appends do not copy them here.
    view: Callable[[], Entities] | None = None

    def put(self, entity_id: str, state: dict[str, Any] | None, seq: int) -> None:
        if state is None:
            self.states.pop(entity_id, None)
            self.sequences.pop(entity_id, None)
        else:
            self.states[entity_id] = state
            self.sequences[entity_id] = seq

    def entities(self) -> Entities:
        if self.view is not None:
            return self.view()
        sequences = self.sequences
        return {e: (s, sequences[e]) for e, s in self.states.items()}


class MemoryStorage(LogStorage):
    """Streams in memory; the default. Nothing survives the process."""

    #: Whether a topic log may :meth:`share` its entities instead of appends copying them.
    shares_entities: bool = True

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
        if stream.view is None:
            stream.put(entity_id, state, record.sequence)

    def append_many(
        self,
        key: Key,
        records: list[LogRecord],
        entity_ids: list[str],
        states: list[dict[str, Any] | None],
    ) -> None:
        if not records:
            return
        stream = self._streams[key]
        latest = stream.latest
        if records[0].sequence != latest + 1 or records[-1].sequence != latest + len(records):
            raise ValueError(
                f"stream {key!r}: appending sequences {records[0].sequence}.."
                f"{records[-1].sequence} after {latest}"
            )
        stream.records.extend(records)
        stream.latest = records[-1].sequence
        if stream.view is not None:  # the topic log keeps them (``share``)
            return
        kept, sequences = stream.states, stream.sequences
        if None not in states:  # no delete: the last state of each entity wins, in C
            kept.update(zip(entity_ids, states, strict=True))  # type: ignore[arg-type]
            sequences.update(zip(entity_ids, range(latest + 1, stream.latest + 1), strict=True))
            return
        for record, entity_id, state in zip(records, entity_ids, states, strict=True):
            if state is None:
                kept.pop(entity_id, None)
                sequences.pop(entity_id, None)
            else:
                kept[entity_id] = state
                sequences[entity_id] = record.sequence

    def share(self, key: Key, view: Callable[[], Entities] | None) -> None:
        """The topic log of ``key`` keeps the entities as appended: ``view()`` answers them.

        Appends then store records only (the log holds every state anyway: two more dict
        writes per event saved, issue 22). ``None``: stop sharing — the entities are copied
        here as they are now, and appends store them again.
        """
        stream = self._streams[key]
        if view is None and stream.view is not None:
            entities = stream.view()
            stream.states = {e: s for e, (s, _) in entities.items()}
            stream.sequences = {e: q for e, (_, q) in entities.items()}
        stream.view = view

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

    def set_records(self, key: Key, records: list[LogRecord]) -> None:
        """Replace the retained records (a mirror loaded from a shared store)."""
        self._streams[key].records = collections.deque(records)

    def trim(self, key: Key, keep: int) -> None:
        records = self._streams[key].records
        popleft = records.popleft
        for _ in range(len(records) - keep):
            popleft()

    def entities(self, key: Key) -> Entities:
        return self._streams[key].entities()


_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY, value TEXT NOT NULL
) WITHOUT ROWID;
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
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
    applied TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (tenant, scope, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency (at);
"""
#: Seconds between deletions of idempotency keys older than the window (``remembered``).
_PRUNE_EVERY: Final = 60.0


@dataclasses.dataclass
class _Pending:
    """Everything appended between two ``take()`` calls, ready to write in one transaction."""

    resets: dict[Key, bytes] = dataclasses.field(default_factory=dict)
    events: list[tuple[str, str, int, str, str]] = dataclasses.field(default_factory=list)
    states: dict[tuple[str, str, str], tuple[dict[str, Any] | None, int]] = dataclasses.field(
        default_factory=dict
    )
    latest: dict[Key, int] = dataclasses.field(default_factory=dict)
    trims: dict[Key, int] = dataclasses.field(default_factory=dict)
    keys: list[tuple[str, str, str, str, float]] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.resets or self.events or self.states or self.latest or self.trims or self.keys
        )


def _private_file(path: str) -> None:
    """Create ``path`` (if missing) readable by its owner only; tighten it if it exists."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SQLiteStorage(MemoryStorage):
    """Streams persisted in ``DIR/rtnb.sqlite3`` (stdlib sqlite3), cached in memory.

    A restart on the same directory restores every stream with its epoch, its
    retained events and its entities, so replay tokens minted before the restart
    still work (given the same secret; see ``handle.py``) — unless the store
    cannot prove its log continuous: after an unclean stop in write-behind mode
    (``fsync="never"``), or when a stream's retained events end before its
    recorded latest, that stream starts a new epoch (its entities are kept,
    its events dropped), so every old replay token answers ``unavailable``.

    The data directory is created 0700, the database and its WAL/SHM files 0600.
    """

    FILENAME: Final = "rtnb.sqlite3"
    keeps_keys = True
    shares_entities = False  # each append buffers its state row (below)
    append_many = LogStorage.append_many  # each append buffers its row (below)

    def __init__(self, directory: str | os.PathLike[str], *, fsync: Fsync = "always") -> None:
        super().__init__()
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, got {fsync!r}")
        self.fsync = fsync
        self.durable = fsync == "always"
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, self.FILENAME)
        # SQLite gives the -wal and -shm files the database file's permissions.
        _private_file(self.path)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.chmod(self.path + suffix, 0o600)
        # Used from the loop thread and (durable writes) from worker threads, one at a time.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        self._pending = _Pending()
        self._closed = False
        #: Seconds idempotency keys are kept (the server sets its ``idempotency_window``).
        self.window: float | None = None
        self._pruned = 0.0
        self.rebased: list[Key] = []  # streams given a new epoch when opened
        self._load()

    def _load(self) -> None:
        db = self._db
        row = db.execute("SELECT value FROM meta WHERE name='state'").fetchone()
        unclean_write_behind = row is not None and row[0] == "open:never"
        for tenant, topic, epoch, latest in db.execute(
            "SELECT tenant, topic, epoch, latest FROM streams"
        ).fetchall():
            key = (tenant, topic)
            stream = _Stream(epoch=bytes(epoch), latest=latest)
            for seq, token, frame in db.execute(
                "SELECT seq, token, frame FROM events WHERE tenant=? AND topic=? ORDER BY seq",
                key,
            ):
                stream.records.append(LogRecord(topic, stream.epoch, seq, token, frame))
            for entity_id, state, seq in db.execute(
                "SELECT entity_id, state, seq FROM entities WHERE tenant=? AND topic=?", key
            ):
                stream.put(entity_id, msgspec.json.decode(state), seq)
            lost = bool(stream.records) and stream.records[-1].sequence != latest
            if unclean_write_behind or lost:
                stream = self._rebase(key, stream)
            self._streams[key] = stream
        if self.rebased:
            logger.warning(
                "rtnb storage: %d stream(s) start a new epoch: %s; old replay tokens answer "
                "'unavailable' and clients re-snapshot",
                len(self.rebased),
                "the last run stopped uncleanly in write-behind mode (fsync='never')"
                if unclean_write_behind
                else "their stored events end before their recorded latest position",
            )
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (f"open:{self.fsync}",))

    def _rebase(self, key: Key, stream: _Stream) -> _Stream:
        """A new epoch for a stream whose continuity cannot be proven: keep its state only."""
        fresh = _Stream(epoch=secrets.token_bytes(len(stream.epoch) or 8))
        fresh.states = stream.states
        fresh.sequences = dict.fromkeys(stream.states, 0)
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM events WHERE tenant=? AND topic=?", key)
            self._db.execute("UPDATE entities SET seq=0 WHERE tenant=? AND topic=?", key)
            self._db.execute(
                "UPDATE streams SET epoch=?, latest=0 WHERE tenant=? AND topic=?",
                (fresh.epoch, *key),
            )
        self.rebased.append(key)
        return fresh

    def reset(self, key: Key, epoch: bytes) -> None:
        super().reset(key, epoch)
        pending = self._pending
        pending.events = [e for e in pending.events if (e[0], e[1]) != key]
        pending.states = {k: v for k, v in pending.states.items() if (k[0], k[1]) != key}
        pending.latest.pop(key, None)
        pending.trims.pop(key, None)
        pending.resets[key] = epoch

    def append(
        self, key: Key, record: LogRecord, entity_id: str, state: dict[str, Any] | None
    ) -> None:
        super().append(key, record, entity_id, state)
        tenant, topic = key
        pending = self._pending
        pending.events.append((tenant, topic, record.sequence, record.token, record.text))
        pending.states[(tenant, topic, entity_id)] = (state, record.sequence)
        pending.latest[key] = record.sequence

    def trim(self, key: Key, keep: int) -> None:
        super().trim(key, keep)
        self._pending.trims[key] = self.bounds(key)[0]

    def remember(self, scope: Scope, name: str, applied: Applied, at: float) -> None:
        self._pending.keys.append((scope[0], scope[1], name, applied.encode(), at))

    def remembered(self, since: float) -> list[tuple[Scope, str, Applied, float]]:
        """Keys stored since ``since``; older ones are deleted (they are past the window)."""
        with self._lock:
            self._db.execute("DELETE FROM idempotency WHERE at < ?", (since,))
            rows = self._db.execute(
                "SELECT tenant, scope, name, applied, at FROM idempotency ORDER BY at"
            ).fetchall()
        return [((t, s), n, Applied.decode(a), at) for t, s, n, a, at in rows]

    def take(self) -> _Pending | None:
        if not self.durable:
            return None
        return self._take()

    def _take(self) -> _Pending | None:
        pending, self._pending = self._pending, _Pending()
        return pending if pending else None

    def write(self, pending: object) -> None:
        assert isinstance(pending, _Pending)
        upserts = [
            (t, p, e, msgspec.json.encode(s).decode(), q)
            for (t, p, e), (s, q) in pending.states.items()
            if s is not None
        ]
        deletes = [(t, p, e) for (t, p, e), (s, _) in pending.states.items() if s is None]
        with self._lock:
            if self._closed:
                raise ServerStopped("the rtnb store is closed")
            db = self._db
            with db:
                db.execute("BEGIN")
                for (tenant, topic), epoch in pending.resets.items():
                    db.execute("DELETE FROM events WHERE tenant=? AND topic=?", (tenant, topic))
                    db.execute("DELETE FROM entities WHERE tenant=? AND topic=?", (tenant, topic))
                    db.execute(
                        "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, 0)", (tenant, topic, epoch)
                    )
                db.executemany(
                    "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", pending.events
                )
                db.executemany("INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?)", upserts)
                db.executemany(
                    "DELETE FROM entities WHERE tenant=? AND topic=? AND entity_id=?", deletes
                )
                db.executemany(
                    "UPDATE streams SET latest=? WHERE tenant=? AND topic=?",
                    [(q, *k) for k, q in pending.latest.items()],
                )
                db.executemany(
                    "DELETE FROM events WHERE tenant=? AND topic=? AND seq<?",
                    [(*k, first) for k, first in pending.trims.items()],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)", pending.keys
                )
                if pending.keys and self.window is not None:
                    now = time.time()
                    if now - self._pruned > _PRUNE_EVERY:
                        self._pruned = now
                        db.execute("DELETE FROM idempotency WHERE at < ?", (now - self.window,))

    def flush(self) -> None:
        if self._closed:
            return
        pending = self._take()
        if pending is not None:
            self.write(pending)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._lock:
            with self._db:
                self._db.execute("BEGIN")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('state', 'clean')")
            self._closed = True
            self._db.close()
