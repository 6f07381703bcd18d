"""``conn.record(path)``: stream a connection's log and frames to rolling parquet files.

Theory of operation
-------------------
The runtime thread must not slow down, so recording costs it one tuple
append per received frame: a *tap* (``conn.add_tap``: called with every raw
frame before the pipeline) appends ``(data, received_at, transport,
attempt)`` to a deque. Everything else happens on the recorder's own thread,
every :data:`ROLL_INTERVAL` seconds or as soon as :data:`ROLL_FRAMES`
frames are waiting: it takes the waiting frames, replaces every token in
them (:func:`~rtnb.telemetry.sanitize.sanitize`), takes the log rows
appended since the last part (``EnvelopeLog.tail``: no full copy of the rings) and
writes them as the next part of the directory (:mod:`rtnb.telemetry.rolling`).

Memory stays bounded: at most :data:`MAX_PENDING_FRAMES` frames and
:data:`MAX_PENDING_BYTES` bytes of frames wait (more are dropped and counted
in ``frames_dropped``, which the files record; a warning is logged once), and
the log is the connection's own bounded log. The last part is written when
the recorder stops, when the connection closes and at interpreter exit.

Replaying needs to know which topics were subscribed with which ordering:
the tap notices when the pipeline's topic set changed and records the new
set before the frame. A recording started after topics were subscribed
begins with a synthetic ``snapshot`` of each topic's state (a *seed*), so a
replay starts from where the live session was. For an exact replay (the
same outcome counts), start recording before subscribing.

Tokens never reach a file: frames are sanitised before writing, and the
log's tables hold no tokens (see :mod:`rtnb.telemetry.log`).

The recorder reads the connection only through its public surface
(:class:`~rtnb.client.source.Source` plus ``add_tap``).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..core.status import Status
from ..protocol.errors import RecordingExists
from ..telemetry.parquet import table_info, write_file
from ..telemetry.recorded import frames_table
from ..telemetry.rolling import list_parts, part_path
from ..telemetry.sanitize import sanitize
from ..telemetry.schema import TABLES
from .flight import seed_frame, topic_configs

if TYPE_CHECKING:
    from .connection import Connection
    from .state import ConnectionState

logger = logging.getLogger("rtnb")

#: Seconds between the rolled files of a recording: 10.
ROLL_INTERVAL: Final = 10.0
#: Frames waiting before a file is rolled early: 20,000.
ROLL_FRAMES: Final = 20_000
#: Frames waiting at most; beyond it frames are dropped and counted: 200,000.
MAX_PENDING_FRAMES: Final = 200_000
#: Bytes (characters for text frames) of frames waiting at most: 256 MiB; beyond
#: it frames are dropped and counted, so large frames cannot outgrow the count cap.
MAX_PENDING_BYTES: Final = 256 * 1024 * 1024
#: Seconds ``stop()`` waits for the recorder thread: 30.
STOP_TIMEOUT: Final = 30.0

_active: weakref.WeakSet[Recorder] = weakref.WeakSet()
_atexit_registered = False


def record(conn: Connection, path: str | os.PathLike[str], **options: Any) -> Recorder:
    """Start recording ``conn`` into the directory ``path``; see :class:`Recorder`."""
    return Recorder(conn, path, **options)


class Recorder:
    """Streams a connection's log and received frames to ``path/part-NNNNNN.parquet``.

    Create it with ``conn.record(path, ...)``. Options:

    ``payloads`` (True)
        Keep event payloads and snapshot states, so a replay rebuilds entity
        state. With False, frames are kept with empty payloads: a replay
        reproduces outcomes and timing only.
    ``roll_interval`` (:data:`ROLL_INTERVAL` s) / ``roll_frames`` (:data:`ROLL_FRAMES`)
        When to write the next file.
    ``overwrite`` (False)
        If ``path`` already holds parts, remove them instead of refusing.

    ``stop()`` writes the last file and detaches; it is also called when the
    connection closes and at interpreter exit. Read the result back with
    ``rtnb.EnvelopeLog.read_parquet(path)``.
    """

    def __init__(
        self,
        conn: Connection,
        path: str | os.PathLike[str],
        *,
        payloads: bool = True,
        roll_interval: float = ROLL_INTERVAL,
        roll_frames: int = ROLL_FRAMES,
        overwrite: bool = False,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        if max_pending_bytes < 1:
            raise ValueError(f"max_pending_bytes must be >= 1, got {max_pending_bytes}")
        if not roll_interval > 0:
            raise ValueError(f"roll_interval must be > 0 seconds, got {roll_interval}")
        if roll_frames < 1:
            raise ValueError(f"roll_frames must be >= 1, got {roll_frames}")
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise RecordingExists(
                f"{os.fspath(path)!r} is a file; a recording is a directory of rolling files"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        existing = list_parts(self.path)
        if existing and not overwrite:
            raise RecordingExists(
                f"{os.fspath(path)!r} already holds a recording ({len(existing)} files); "
                "choose another directory or pass overwrite=True"
            )
        for old in existing:
            old.unlink()
        self.payloads = payloads
        self.roll_interval = float(roll_interval)
        self.roll_frames = int(roll_frames)
        self.files: list[Path] = []
        self.frames_recorded = 0
        self.frames_dropped = 0
        self.error: BaseException | None = None
        self.started_at = time.time()
        self._conn = conn
        self._log = conn.log
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        #: frame bytes ever queued (runtime thread) / ever taken (recorder thread):
        #: one writer each, so no lock; waiting bytes are the difference
        self._bytes_in = [0]
        self._bytes_out = 0
        self.max_pending_bytes = max_pending_bytes
        self._since = dict.fromkeys((spec.name for spec in TABLES), 0)
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._stopped = False
        self._topics: Mapping[str, Any] = {}
        self._topic_keys: frozenset[str] = frozenset()
        self._remove_state_cb: Callable[[], None] | None = None
        self._remove_tap: Callable[[], None] | None = None
        conn.call(self._install, what="conn.record")
        self._thread = threading.Thread(
            target=self._run, name=f"rtnb-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()
        _active.add(self)
        _register_atexit()

    # -- runtime thread ----------------------------------------------------------------

    def _install(self) -> None:
        conn = self._conn
        state = conn.state
        now = time.time()
        self._topics = conn.topic_states
        self._note_topics(now, state.transport, state.attempt)
        for ts in list(self._topics.values()):
            seed = seed_frame(ts, self.payloads)
            if seed is not None:
                self._pending.append(("seed", now, state.transport, state.attempt, seed))
        self._remove_tap = conn.add_tap(self._make_tap())
        self._remove_state_cb = conn.on_state(self._on_state)

    def _note_topics(self, now: float, transport: str, attempt: int) -> None:
        self._topic_keys = frozenset(self._topics)
        marker = ("topics", now, transport, attempt, topic_configs(self._topics))
        self._pending.append(marker)

    def _make_tap(self) -> Callable[[Any, float, str, int], None]:
        """The per-frame hook: one tuple append, everything bound to closure cells."""
        pending, append = self._pending, self._pending.append
        topics, roll, note = self._topics, self.roll_frames, self._note_topics
        bytes_in = self._bytes_in

        def tap(data: Any, now: float, transport: str, attempt: int) -> None:
            if topics.keys() != self._topic_keys:
                note(now, transport, attempt)
            size = len(data)
            if bytes_in[0] + size - self._bytes_out > self.max_pending_bytes:
                self._drop_for_bytes()
                return
            bytes_in[0] += size
            append((data, now, transport, attempt))
            if len(pending) >= roll:  # rare: roll a file early, or drop if it cannot keep up
                self._wake.set()
                if len(pending) > MAX_PENDING_FRAMES:
                    pending.pop()
                    bytes_in[0] -= size
                    self.frames_dropped += 1

        return tap

    def _drop_for_bytes(self) -> None:
        if not self.frames_dropped:
            logger.warning(
                "rtnb: recording to %s is %s bytes behind (max %s): dropping frames until "
                "it catches up; the count is in the files (frames_dropped)",
                self.path,
                f"{self._bytes_in[0] - self._bytes_out:,}",
                f"{self.max_pending_bytes:,}",
            )
        self.frames_dropped += 1
        self._wake.set()

    def _on_state(self, state: ConnectionState) -> None:
        if state.status is Status.CLOSED:
            self._detach()
            self._stopping = True
            self._wake.set()

    def _detach(self) -> None:
        """Remove the tap and the state callback (on the runtime thread, or at exit)."""
        for remove in (self._remove_tap, self._remove_state_cb):
            if remove is not None:
                remove()
        self._remove_tap = self._remove_state_cb = None

    # -- recorder thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.roll_interval)
            self._wake.clear()
            stopping = self._stopping
            self._write_safely()
            if stopping:
                break

    def _write_safely(self) -> Path | None:
        try:
            return self._write_part()
        except Exception as exc:  # keep recording; say so once per kind of failure
            if self.error is None or type(self.error) is not type(exc):
                logger.warning("rtnb: recording to %s failed: %s", self.path, exc)
            self.error = exc
            return None

    def _write_part(self) -> Path | None:
        with self._write_lock:
            if self._stopped:
                return None
            n = len(self._pending)
            raw = [self._pending.popleft() for _ in range(n)]
            self._bytes_out += sum(len(item[0]) for item in raw if len(item) == 4)
            rows = []
            for item in raw:
                if len(item) == 4:
                    data, now, transport, attempt = item
                    clean = sanitize(data, payloads=self.payloads)
                    rows.append((now, "frame", transport, attempt, clean, isinstance(data, str)))
                else:
                    kind, now, transport, attempt, payload = item
                    rows.append((now, kind, transport, attempt, payload, True))
            snaps = [self._log.tail(spec.name, self._since[spec.name]) for spec in TABLES]
            if not rows and not any(s.held for s in snaps) and self.files:
                return None
            info = table_info(snaps)
            for snap in snaps:
                info["tables"][snap.spec.name]["first"] = snap.total - snap.held
            self.frames_recorded += sum(1 for r in rows if r[1] == "frame")
            info["recording"] = {
                "payloads": self.payloads,
                "started_at": self.started_at,
                "part": len(self.files) + 1,
                "frames_total": self.frames_recorded,
                "frames_dropped": self.frames_dropped,
            }
            path = part_path(self.path, len(self.files) + 1)
            write_file(path, snaps, info, frames_table(rows))
            for snap in snaps:
                self._since[snap.spec.name] = snap.total
            self.files.append(path)
            return path

    # -- public ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._stopped

    def flush(self) -> Path | None:
        """Write what is waiting as the next file now (None if nothing was waiting)."""
        return self._write_safely()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Detach from the connection, write the last file and end the recorder thread."""
        if self._stopped:
            return
        try:  # on the runtime thread (directly if already there)
            self._conn.call(self._detach, what="recorder.stop")
        except Exception:  # the runtime has shut down (interpreter exit): nothing races
            self._detach()
        self._stopping = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        self._write_safely()
        self._stopped = True
        _active.discard(self)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "recording"
        return (
            f"<Recorder {os.fspath(self.path)!r} {state}: {len(self.files)} files, "
            f"{self.frames_recorded:,} frames"
            + (f", {self.frames_dropped:,} dropped" if self.frames_dropped else "")
            + ">"
        )


def _stop_all() -> None:  # pragma: no cover - interpreter exit
    for recorder in list(_active):
        with contextlib.suppress(Exception):
            recorder.stop(timeout=5.0)


def _register_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        # Registered after the runtime's own atexit hook, so it runs first (LIFO).
        atexit.register(_stop_all)
        _atexit_registered = True
