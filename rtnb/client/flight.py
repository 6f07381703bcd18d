"""The flight recorder: every connection's most recent raw frames, always on.

Why: an incident is noticed after it happened. ``conn.record(dir)`` only
helps if it was started before; the flight recorder keeps the last
:data:`FLIGHT_BYTES` / :data:`FLIGHT_SECONDS` of frames of every connection,
so ``conn.log.to_parquet(p)`` right after an incident writes a file that
``rtnb.replay(rtnb.EnvelopeLog.read_parquet(p))`` plays back.

Theory of operation
-------------------
A tap (``conn.add_tap``) appends ``(data, received_at, transport, attempt)``
to the current *segment* (a list) and adds the frame's size to a counter:
that is all the runtime thread pays per frame. A segment ends after its frames
hold 1/:data:`SEGMENTS` of the byte cap -- or :data:`SEED_SPACING` times its
seeds' bytes, if more -- or after 1/:data:`SEGMENTS` of the age cap; the next one begins
with the subscribed topics and a *seed* per topic (a synthetic ``snapshot``
of the topic's state at that instant, as ``conn.record`` writes when it
starts late). The oldest segments are dropped whole, so the window held
always begins at a segment start: either the connection's first frame
(an exact replay) or a seed (the replay starts from the state then and says
so: ``Replay.window_start`` / ``Replay.seeded``).

No size cliff: a seed is taken as two shallow dict copies (entity states are
copy-on-write, :mod:`rtnb.core.store`), O(entities) in C, and encoded only when a
recording is written, on the caller's thread. It is counted at its state's size
measured exactly (one encode, O(state)), measured again only after
:data:`SEED_SPACING` times that size of frames was received -- in between, the
size measured plus the bytes received since bound it -- or at the store's own
bound (``TopicStore.nbytes``) when that is lower. The store's bound alone can be
far above the state (it is measured only near its cap, and a batch frame is
charged whole), and a topic must never be left out of the window for a bound.
Since a segment's frames hold :data:`SEED_SPACING` times its seeds' bytes, seeding
costs O(1) per byte received whatever the state's size (``python -m bench
telemetry``: 60,000 entities). A seed that cannot be afforded (seeds over
1/(SEED_SPACING + 1) of the cap) is skipped, counted in ``seeds_skipped`` and named
in the recording (``info["seeds_skipped"]``: the topics whose state the window does
not start from).

Bounds: bytes held (frame sizes plus :data:`ROW_OVERHEAD` per frame, which
is what a held frame costs beyond its text, plus the seeds) never exceed the
byte cap, checked on every frame: before a new segment starts, the oldest are
dropped until the cap has room for one more segment, and a frame that would
still not fit (a large snapshot or replay batch) first drops older segments,
then starts a fresh seeded segment; a frame that does not fit even beside a
fresh seed (a frame, or a state, the size of the cap) is not held: it is
counted in ``frames_dropped`` and the next frame starts a new seeded segment,
so the window stays replayable. Frames older than the age cap are dropped at
the next segment start and never written. The cap is ``rtnb.Limits
(flight_bytes=, flight_seconds=)``; 0 disables the flight recorder.

Tokens: frames are held as received, in this process only (like the
pipeline's own buffers); they are sanitised (:func:`~rtnb.telemetry.sanitize.sanitize`)
when written, so no file holds a token or replay cursor. The seeds carry a
synthetic token.

This module must stay importable without pyarrow (``import rtnb`` is light);
building the frames table happens in :meth:`FlightRecorder.recording`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..core.orderer import DEFAULT_GAP_TIMEOUT
from ..telemetry.sanitize import filler

if TYPE_CHECKING:
    from ..telemetry.recorded import Recording
    from .connection import Connection

#: Bytes of frames the flight recorder holds per connection: 32 MiB -- about
#: 150,000 typical 200-byte frames, a few minutes of a busy stream and hours of
#: a quiet one; small next to the telemetry rings (500k envelope rows).
FLIGHT_BYTES: Final = 32 * 1024 * 1024
#: Seconds of frames held at most: 900 (15 minutes) -- long enough to cover an
#: incident's lead-up and the minutes until someone opens the notebook.
FLIGHT_SECONDS: Final = 900
#: Segments the caps are cut into (a seed starts each): 16, so the window held
#: is never less than 15/16 of a cap once full, and seeds are rare.
SEGMENTS: Final = 16
#: Bytes a held frame costs beyond its text (str header, tuple, float, list slot), counted
#: against the cap so the cap bounds memory, not just text.
ROW_OVERHEAD: Final = 160
#: A segment's frames hold at least this many times its seeds' bytes before the next
#: seed, so seeding (two dict copies, and later their release) costs a third of a byte
#: per byte received whatever the state's size, and states up to a quarter of the cap
#: are seeded (bench: a topic of 60 thousand entities costs <= 2x one of 100 per frame): 3.
SEED_SPACING: Final = 3

_SEED_TOKEN = filler(32).decode()

Item = tuple[Any, ...]


def topic_configs(topics: Mapping[str, Any]) -> bytes:
    """The ``topics`` marker: ``{topic: {ordering, gap_timeout}}`` as JSON bytes."""
    configs = {
        name: {
            "ordering": ts.ordering,
            "gap_timeout": float(getattr(ts.orderer, "gap_timeout", DEFAULT_GAP_TIMEOUT)),
        }
        for name, ts in topics.items()
    }
    return json.dumps(configs, sort_keys=True).encode()


def seed_frame(ts: Any, payloads: bool) -> bytes | None:
    """A synthetic snapshot frame of ``ts``'s current state, or None if it has none."""
    store = ts.store
    position = ts.orderer.position()
    if position is None and not store.entities:
        return None
    seqs = store.sequences
    frame = {
        "op": "snapshot",
        "topic": ts.name,
        "entities": [
            {"entityId": eid, "state": state if payloads else {}, "sequence": seqs.get(eid, 0)}
            for eid, state in store.entities.items()
        ],
        "token": _SEED_TOKEN,
        "sequence": max(0, position if position is not None else max(seqs.values(), default=0)),
    }
    return msgspec.json.encode(frame)


class Seed:
    """A topic's state at one instant, taken in O(entities) C copies and encoded (as
    :func:`seed_frame` does) only when needed: ``bytes(seed)``. ``nbytes``: what it is
    counted as (its size measured, or the store's bound if lower)."""

    __slots__ = ("entities", "name", "nbytes", "position", "sequences")

    def __init__(self, ts: Any) -> None:
        store = ts.store
        self.name: str = ts.name
        self.entities: dict[str, Any] = dict(store.entities)  # shared, never mutated
        self.sequences: dict[str, int] = dict(store.sequences)
        self.position: int | None = ts.orderer.position()
        self.nbytes: int = _state_bytes(store)

    def __bytes__(self) -> bytes:
        seqs = self.sequences
        position = self.position
        frame = {
            "op": "snapshot",
            "topic": self.name,
            "entities": [
                {"entityId": eid, "state": state, "sequence": seqs.get(eid, 0)}
                for eid, state in self.entities.items()
            ],
            "token": _SEED_TOKEN,
            "sequence": max(0, position if position is not None else max(seqs.values(), default=0)),
        }
        return msgspec.json.encode(frame)


def _state_bytes(store: Any) -> int:
    """A store's size bound (``TopicStore.nbytes``), O(1); measured for other stores."""
    nbytes = getattr(store, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    return len(msgspec.json.encode(store.entities))


def _exact_bytes(store: Any) -> int:
    """A store's state size in JSON bytes, measured (O(state); the store is not changed)."""
    try:
        return len(msgspec.json.encode(store.entities))
    except (TypeError, msgspec.EncodeError):
        return len(repr(store.entities))


def _has_state(ts: Any) -> bool:
    return ts.orderer.position() is not None or bool(ts.store.entities)


class _Segment:
    __slots__ = ("extras", "items", "nbytes", "roll_bytes", "seeded", "skipped", "start")

    def __init__(self, start: float, seeded: bool, roll_bytes: int) -> None:
        self.items: list[Item] = []
        #: items that are not frames (topic markers, seeds)
        self.extras = 0
        self.nbytes = 0
        #: ``nbytes`` at which the segment ends: its frames hold at least as many bytes
        #: as its seeds (so seeding costs O(1) per byte received)
        self.roll_bytes = roll_bytes
        self.start = start
        self.seeded = seeded
        #: topics whose seed was skipped (could not be afforded)
        self.skipped: list[str] = []

    @property
    def has_frames(self) -> bool:
        return len(self.items) > self.extras

    @property
    def frames(self) -> int:
        return len(self.items) - self.extras


class FlightRecorder:
    """A bounded ring of one connection's recent frames (see the module doc).

    ``max_bytes`` / ``max_seconds``: the caps (``rtnb.Limits.flight_bytes`` /
    ``flight_seconds``); either 0 disables it. Runs on the runtime thread;
    :meth:`recording` may be called from any thread.
    """

    def __init__(self, source: Connection, max_bytes: int, max_seconds: float) -> None:
        self.max_bytes = int(max_bytes)
        self.max_seconds = float(max_seconds)
        self.enabled = self.max_bytes > 0 and self.max_seconds > 0
        self.started_at = time.time()
        #: frames dropped from the oldest end
        self.frames_evicted = 0
        #: frames not held because they did not fit the cap even beside a fresh seed
        self.frames_dropped = 0
        #: seeds not taken because the topic's state did not fit the cap beside frames
        self.seeds_skipped = 0
        self._source = source
        self._segments: deque[_Segment] = deque()
        self._held = 0  # bytes of closed segments
        self._seg_bytes = max(1, self.max_bytes // SEGMENTS)
        self._seg_seconds = self.max_seconds / SEGMENTS
        self._topics: Mapping[str, Any] = {}
        self._topic_keys: frozenset[str] = frozenset()
        self._cur = _Segment(self.started_at, seeded=False, roll_bytes=self._seg_bytes)
        self._roll_at = self.started_at + self._seg_seconds
        # a frame was not held: the next one starts a seeded segment (not before
        # ``_cut_until`` when even the seeds alone did not fit)
        self._cut = False
        self._cut_until = 0.0
        self._remove: Callable[[], None] | None = None
        self._window_skipped: list[str] = []
        self._current_bytes: Callable[[], int] = lambda: 0
        #: bytes of the segments closed and the frames dropped so far (what paces the
        #: exact measures, and bounds how much a state measured before has grown)
        self._received = 0
        #: topic -> (``_received`` then, its state's exact size) when last measured
        self._sizes: dict[str, tuple[int, int]] = {}

    def install(self) -> None:
        """Attach to the source (on the runtime thread)."""
        if not self.enabled:
            return
        self._topics = self._source.topic_states
        self._segments.append(self._cur)
        self._remove = self._source.add_tap(self._make_tap())

    def _make_tap(self) -> Callable[[Any, float, str, int], None]:
        """The per-frame hook: one append and two additions in the common case, every
        name a closure cell (no attribute lookups)."""
        admit, topics = self._admit, self._topics
        cur = self._cur
        append = cur.items.append
        nbytes = 0
        roll_bytes = cur.roll_bytes
        room = self.max_bytes  # bytes the current segment may hold
        roll_at = self._roll_at
        keys = self._topic_keys

        def tap(data: Any, now: float, transport: str, attempt: int) -> None:
            nonlocal cur, append, nbytes, room, roll_at, keys, roll_bytes
            size = len(data) + ROW_OVERHEAD
            if (
                nbytes >= roll_bytes
                or nbytes + size > room
                or now >= roll_at
                or topics.keys() != keys
            ):
                cur.nbytes = nbytes
                held = admit(now, transport, attempt, size)
                if cur is not self._cur:
                    cur = self._cur
                    append = cur.items.append
                keys, nbytes, roll_at = self._topic_keys, cur.nbytes, self._roll_at
                roll_bytes = cur.roll_bytes
                room = self.max_bytes - self._held if not self._cut else -1
                if not held:
                    return
            append((data, now, transport, attempt))
            nbytes += size

        def current_bytes() -> int:
            return nbytes

        self._current_bytes = current_bytes
        return tap

    def _admit(self, now: float, transport: str, attempt: int, size: int) -> bool:
        """The slow path of the tap: roll, note a topic change, make room for a frame of
        ``size`` bytes. False: the frame is not held (see the module doc)."""
        cur = self._cur
        if self._cut and now < self._cut_until:
            self.frames_dropped += 1
            self._received += size
            return False
        if self._cut or cur.nbytes >= cur.roll_bytes or now >= self._roll_at:
            self._roll(now, transport, attempt)
        elif self._topics.keys() != self._topic_keys:
            self._note_topics(cur, now, transport, attempt)
        self._cut = False
        if self._fits(size):
            return True
        if self._cur.has_frames:  # a fresh seeded segment needs less room than this one
            self._roll(now, transport, attempt)
            if self._fits(size):
                return True
        # Not even beside a fresh seed: do not hold it; the next frame seeds again.
        self._cut = True
        self.frames_dropped += 1
        self._received += size
        self._cut_until = now
        cur = self._cur
        if self._held + cur.nbytes > self.max_bytes:
            # The seeds alone are over the cap (a state as large as the cap): hold
            # nothing, and try again only after a segment's time (a seed is not cheap).
            cur.items.clear()
            cur.extras = 0
            cur.nbytes = 0
            self._cut_until = now + self._seg_seconds
        return False

    def _fits(self, size: int) -> bool:
        """Drop the oldest closed segments until a frame of ``size`` fits; False if it
        cannot (only the current segment is left)."""
        segments, cur = self._segments, self._cur
        while self._held + cur.nbytes + size > self.max_bytes and segments[0] is not cur:
            self._evict_oldest()
        return self._held + cur.nbytes + size <= self.max_bytes

    def _evict_oldest(self) -> None:
        old = self._segments.popleft()
        self._held -= old.nbytes
        self.frames_evicted += old.frames

    def _note_topics(self, seg: _Segment, now: float, transport: str, attempt: int) -> None:
        self._topic_keys = frozenset(self._topics)
        marker = topic_configs(self._topics)
        seg.items.append(("topics", now, transport, attempt, marker))
        seg.extras += 1
        seg.nbytes += len(marker) + ROW_OVERHEAD

    def _roll(self, now: float, transport: str, attempt: int) -> _Segment:
        """Close the current segment, drop what is over the caps, start a seeded one."""
        self._held += self._cur.nbytes
        self._received += self._cur.nbytes
        segments = self._segments
        horizon = now - self.max_seconds
        while segments and (
            self._held + self._seg_bytes > self.max_bytes
            or (len(segments) > 1 and segments[1].start < horizon)
            or (len(segments) == 1 and now - segments[0].start > self.max_seconds)
        ):
            self._evict_oldest()
        seg = _Segment(now, seeded=True, roll_bytes=self._seg_bytes)
        self._note_topics(seg, now, transport, attempt)
        # Seeds may take 1/(SEED_SPACING + 1) of the cap (the frames after them hold
        # SEED_SPACING times as much); a topic whose state does not fit is not seeded
        # (said in the recording).
        budget = self.max_bytes // (SEED_SPACING + 1) - seg.nbytes
        for ts in list(self._topics.values()):
            if not _has_state(ts):
                continue
            # The store's bound may be far above the state (it is measured only near
            # its cap, and a batch frame is charged whole): the seed is counted at its
            # size measured, at most once per SEED_SPACING x that size of frames.
            size = min(_state_bytes(ts.store), self._measured(ts))
            if size + ROW_OVERHEAD > budget:
                seg.skipped.append(ts.name)
                self.seeds_skipped += 1
                continue
            seed = Seed(ts)
            seed.nbytes = size
            seg.items.append(("seed", now, transport, attempt, seed))
            seg.extras += 1
            seg.nbytes += seed.nbytes + ROW_OVERHEAD
            budget -= seed.nbytes + ROW_OVERHEAD
        seg.roll_bytes = seg.nbytes + max(self._seg_bytes, SEED_SPACING * seg.nbytes)
        segments.append(seg)
        self._cur = seg
        self._roll_at = now + self._seg_seconds
        return seg

    def _measured(self, ts: Any) -> int:
        """``ts``'s state size measured exactly (JSON bytes, O(state)); or, when it was
        measured less than :data:`SEED_SPACING` times that size of frames ago, that size
        plus the frames since (an upper bound: a frame adds at most its size to a state),
        so measuring costs O(1) per byte received."""
        last = self._sizes.get(ts.name)
        if last is not None:
            since = self._received - last[0]
            if since < SEED_SPACING * last[1]:
                return last[1] + since
        size = _exact_bytes(ts.store)
        self._sizes[ts.name] = (self._received, size)
        return size

    # -- reading (any thread) --------------------------------------------------------------

    @property
    def nbytes(self) -> int:
        """Bytes held (frames plus per-frame overhead plus seeds)."""
        return self._held + self._current_bytes() if self.enabled else 0

    @property
    def frames_total(self) -> int:
        """Frames ever seen (held, evicted and dropped)."""
        held = sum(seg.frames for seg in list(self._segments))
        return self.frames_evicted + self.frames_dropped + held

    def _copy(self) -> tuple[list[Item], bool, int, int]:
        """The items held within the age cap, oldest first (on the runtime thread)."""
        horizon = time.time() - self.max_seconds
        segments = list(self._segments)
        keep = 0
        while keep < len(segments) - 1 and segments[keep + 1].start < horizon:
            keep += 1
        items: list[Item] = []
        for seg in segments[keep:]:
            items.extend(seg.items)
        seeded = bool(segments) and segments[keep].seeded
        skipped = sum(seg.frames for seg in segments[:keep])
        if self._cut and items:
            # The newest frame was too large to hold: end the window with the state now
            # (not counted against the cap: it exists only in this copy).
            now = time.time()
            _, _, transport, attempt = items[-1][:4]
            items.append(("topics", now, transport, attempt, topic_configs(self._topics)))
            for ts in list(self._topics.values()):
                if _has_state(ts):
                    items.append(("seed", now, transport, attempt, Seed(ts)))
        self._window_skipped = list(segments[keep].skipped) if segments else []
        return items, seeded, skipped, self.frames_total

    def recording(self) -> Recording | None:
        """The window held as a :class:`~rtnb.telemetry.recorded.Recording` (sanitised), or
        None when disabled or empty. Imports pyarrow."""
        if not self.enabled:
            return None
        items, seeded, skipped, total = self._source.call(self._copy, what="flight recorder")
        from ..telemetry.recorded import Recording, frames_table
        from ..telemetry.sanitize import sanitize

        rows = []
        for item in items:
            if len(item) == 4:
                data, now, transport, attempt = item
                rows.append(
                    (now, "frame", transport, attempt, sanitize(data), isinstance(data, str))
                )
            else:  # a seed is encoded here, on the caller's thread
                kind, now, transport, attempt, payload = item
                rows.append((now, kind, transport, attempt, bytes(payload), True))
        if not any(r[1] in ("frame", "seed") for r in rows):
            return None  # (a window of seeds alone is the state then: replayable)
        window_start = float(rows[0][0])
        info = {
            "payloads": True,
            "started_at": self.started_at,
            "flight": True,
            "window_start": window_start,
            "seeded": seeded,
            "frames_total": total,
            "frames_evicted": self.frames_evicted + skipped,
            "frames_dropped": self.frames_dropped,
            "seeds_skipped": self._window_skipped,
            "max_bytes": self.max_bytes,
            "max_seconds": self.max_seconds,
        }
        return Recording(frames_table(rows), info)

    def __repr__(self) -> str:
        if not self.enabled:
            return "<FlightRecorder disabled>"
        return (
            f"<FlightRecorder {self.nbytes:,} of {self.max_bytes:,} bytes, "
            f"{len(self._segments)} segments, {self.frames_total:,} frames seen, "
            f"{self.frames_evicted:,} evicted"
            + (f", {self.frames_dropped:,} too large to hold" if self.frames_dropped else "")
            + ">"
        )
