"""The replay's sans-I/O core: a recording's timeline stepped through the pipeline.

:class:`Player` is synchronous and has no clock of its own: the driver
(:class:`~rtnb.client.replay.Replay`, on the runtime loop) tells it how far
to go in recorded time (``advance(until, limit)``) and it processes the rows
up to there -- frames through a :class:`~rtnb.core.pipeline.Pipeline`
exactly as the live session's driver fed them (transport and attempt set,
the recorded receive time as ``now``, a gap check every
:data:`~rtnb.client.session.MAINTENANCE_INTERVAL` of recorded time while
subscribed), topic-set changes applied, and recorded connection states,
heartbeats and mutations appended to the log. ``reset()`` goes back to the
start without replacing the :class:`TopicState` objects, so the handles and
change cursors widgets hold stay valid across seeks.

Checkpoints make a seek fast: while playing forward (or rolling forward in a
seek), every :data:`CHECKPOINT_ROWS` rows the player keeps a copy of the
pipeline (orderers, topic stores and statuses) and a mark of its log
(:meth:`EnvelopeLog.mark`). ``seek_to(t)`` restores the latest checkpoint at or
before ``t`` (copying the saved state *into* the live ``TopicState`` objects,
so handles stay valid) and rolls forward from it: a seek costs one restore
plus at most ``checkpoint_rows`` rows, wherever ``t`` is.

Rolling forward is the cost (~10 µs a row); a restore is a few milliseconds.
So checkpoints are dense, and made cheap so they can be:

* entity dicts are copy-on-write (a merge never mutates one), so a checkpoint
  copies each topic's maps of them, not the dicts;
* the dedupe memory (up to 50,000 ids, ~2.3 MB as a dict) is a FIFO of the ids
  applied, so a checkpoint keeps only the ids added since the previous one
  (16 bytes an id beside the id itself) and a restore rebuilds the memory from
  the last checkpoints' ids (:meth:`Deduper.restored`).

The state after ``seek_to(t)`` is the state after playing from the start to
``t`` (a property test checks it).
"""

from __future__ import annotations

import bisect
import copy
import json
import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from ..core.dedupe import DEFAULT_DEDUPE_MAX_ENTRIES, Deduper
from ..core.merge import MergeFn
from ..core.pipeline import Pipeline, TopicState
from ..core.status import Status
from ..protocol.frames import Event
from ..telemetry.log import EnvelopeLog
from ..telemetry.ring import TableSnapshot
from .replay_timeline import FRAME, HEARTBEAT, MUTATION, STATE, FrameReader, Timeline, TopicConfig
from .session import MAINTENANCE_INTERVAL
from .state import ConnectionState

#: Rows between two checkpoints, at least: 2,000 (a seek rolls forward at most this many).
CHECKPOINT_ROWS = 2_000
#: Checkpoints kept at most: 128 (longer recordings space them further apart: 1,000,000
#: rows give one every ~8,200 rows, a roll forward of ~0.1 s). A checkpoint costs the
#: maps of the topics' entities (~0.25 MB at 3,000 entities), the entity versions it
#: alone still holds (~0.5 MB when most entities changed since the previous one), and
#: 16 bytes per id applied since the previous one (plus the id, while it is kept).
MAX_CHECKPOINTS = 128

#: Joins a checkpoint's dedupe ids into one string (a str per id costs ~50 bytes more).
_SEP = "\x00"


def _pack(ids: list[str]) -> str | tuple[str, ...]:
    """Ids as one string (a tuple if one of them holds the separator)."""
    joined = _SEP.join(ids)
    return joined if joined.count(_SEP) == max(len(ids) - 1, 0) else tuple(ids)


def _unpack(packed: str | tuple[str, ...], n: int) -> list[str]:
    """The ids :func:`_pack` packed, as a list."""
    if isinstance(packed, tuple):
        return list(packed)
    return packed.split(_SEP) if n else []


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The player's state before row ``i`` (see the module doc)."""

    i: int
    clock: float
    next_check: float
    state: ConnectionState
    #: the pipeline without its dedupe memory (an empty one stands in)
    pipeline: Pipeline
    log_mark: tuple[tuple[str, int, dict[str, Any]], ...]
    #: the dedupe memory's size, ids ever added and evicted then
    dedupe_len: int
    dedupe_added: int
    dedupe_evicted: int
    #: the ids added since the previous checkpoint still remembered, oldest first
    #: (packed: :func:`_unpack` them), and when each was added
    dedupe_ids: str | tuple[str, ...]
    dedupe_times: array[float]


OnApply = Callable[[TopicState, Event, Any], None]


class Player:
    """Steps a recording's :class:`Timeline` through a fresh pipeline into ``log``."""

    def __init__(
        self,
        timeline: Timeline,
        log: EnvelopeLog,
        *,
        merge: Mapping[str, MergeFn] | None = None,
        on_state: Callable[[ConnectionState], None] | None = None,
        dedupe_entries: int = DEFAULT_DEDUPE_MAX_ENTRIES,
    ) -> None:
        self.timeline = timeline
        self.log = log
        self.configs: dict[str, TopicConfig] = dict(timeline.topics)
        self._merge = dict(merge or {})
        self._reader = FrameReader(timeline.frames)
        self._dedupe_entries = dedupe_entries
        self.on_apply: OnApply | None = None
        self.pipeline = self._new_pipeline()
        #: one TopicState per recorded topic, for the whole life of the player
        self.topic_states: dict[str, TopicState] = {
            name: self.pipeline.new_topic_state(
                name, cfg.ordering, merge=self._merge.get(name), gap_timeout=cfg.gap_timeout
            )
            for name, cfg in self.configs.items()
        }
        self.on_state = on_state
        #: while True, state changes are not reported (a seek reports the last one)
        self.quiet = False
        #: checkpoints by row index, ascending (``checkpoint_rows`` apart; 0 turns them off)
        self.checkpoints: list[Checkpoint] = []
        self.checkpoint_rows = max(CHECKPOINT_ROWS, -(-len(timeline) // MAX_CHECKPOINTS))
        #: the log as it was at the end (kept once the player got there, for forward jumps)
        self._full: dict[str, TableSnapshot] | None = None
        self.reset()

    def __len__(self) -> int:
        return len(self.timeline)

    @property
    def done(self) -> bool:
        return self.i >= len(self.timeline)

    @property
    def next_time(self) -> float:
        """Recorded time of the next row (inf when done)."""
        return float(self.timeline.times[self.i]) if not self.done else math.inf

    def reset(self) -> None:
        """Back to the start: empty log, topics and pipeline; the IDLE state."""
        self.log.clear()
        self.pipeline = self._new_pipeline()
        for name, state in self.topic_states.items():
            cfg = self.configs[name]
            self.pipeline.reset_topic(state, cfg.ordering, gap_timeout=cfg.gap_timeout)
        self.i = 0
        self._next_check = -math.inf
        #: recorded time of the last row processed
        self.clock = self.timeline.start
        self.state = ConnectionState(
            Status.IDLE,
            None,
            "replay: not started",
            0,
            None,
            self.timeline.first_transport(),
            self.clock,
        )

    def _new_pipeline(self) -> Pipeline:
        pipeline = Pipeline(self.log, deduper=Deduper(max_entries=self._dedupe_entries))
        pipeline.set_on_apply(self.on_apply)
        return pipeline

    def set_on_apply(self, callback: OnApply | None) -> None:
        """Call ``callback(topic_state, event, outcome)`` for each event applied (None: none)."""
        self.on_apply = callback
        self.pipeline.set_on_apply(callback)

    def advance(self, until: float, limit: int, *, quiet: bool = False) -> None:
        """Process up to ``limit`` rows whose recorded time is at most ``until``
        (``quiet``: without reporting the state changes passed, as a seek does)."""
        if quiet and not self.quiet:
            self.quiet = True
            try:
                self.advance(until, limit)
            finally:
                self.quiet = False
            return
        times, n = self.timeline.times, len(self.timeline)
        stop = min(n, self.i + limit)
        every = self.checkpoint_rows
        while self.i < stop and times[self.i] <= until:
            self._step(self.i)
            self.i += 1
            if every and not self.i % every:
                self.clock = max(self.clock, float(times[self.i - 1]))
                self._checkpoint()
        if self.i:
            self.clock = max(self.clock, float(times[self.i - 1]))
        if self.i >= n and self._full is None and every:
            full = self.log.snapshot_all()
            if all(snap.held == snap.total for snap in full.values()):
                self._full = full

    # -- checkpoints ------------------------------------------------------------------

    def _copy(self, pipeline: Pipeline) -> Pipeline:
        """A copy of ``pipeline`` that shares with it what is not state (the log, the
        decoder, the apply callback) and what is never mutated (the entity dicts)."""
        memo: dict[int, Any] = {id(self.log): self.log}
        memo[id(pipeline.decoder)] = pipeline.decoder
        if self.on_apply is not None:
            memo[id(self.on_apply)] = self.on_apply
        copy.deepcopy(pipeline.deduper, memo)  # first: its fast copy registers its dict
        for ts in pipeline.topics.values():
            store = ts.store
            memo[id(store.entities)] = store.entities.copy()
            memo[id(store.sequences)] = store.sequences.copy()
        return copy.deepcopy(pipeline, memo)

    def _checkpoint(self) -> None:
        cps = self.checkpoints
        if cps and cps[-1].i >= self.i:
            return
        live = self.pipeline
        deduper = live.deduper
        live.use_deduper(Deduper(max_entries=deduper.max_entries, max_age=deduper.max_age))
        try:
            saved = self._copy(live)
        finally:
            live.use_deduper(deduper)
        added = deduper.added
        ids, times = deduper.newest(added - (cps[-1].dedupe_added if cps else 0))
        cps.append(
            Checkpoint(
                self.i,
                self.clock,
                self._next_check,
                self.state,
                saved,
                self.log.mark(),
                len(deduper),
                added,
                deduper.evicted,
                _pack(ids),
                array("d", times),
            )
        )

    def _deduper_at(self, k: int) -> Deduper:
        """The dedupe memory at checkpoint ``k``: the last ``dedupe_len`` ids added, found
        in the ids of checkpoints ``k``, ``k - 1``, ... (the memory is a FIFO)."""
        cp = self.checkpoints[k]
        need, parts = cp.dedupe_len, []
        j = k
        while need > 0:
            if j < 0:
                raise RuntimeError("replay checkpoints lost the ids of the dedupe memory")
            part = self.checkpoints[j]
            have = len(part.dedupe_times)
            take = min(need, have)
            if take:
                ids = _unpack(part.dedupe_ids, have)
                parts.append((ids[-take:], part.dedupe_times[-take:]))
            need -= take
            j -= 1
        parts.reverse()
        ids = list(chain.from_iterable(p for p, _ in parts))
        times = list(chain.from_iterable(p for _, p in parts))
        template = cp.pipeline.deduper
        return Deduper.restored(
            ids,
            times,
            max_entries=template.max_entries,
            max_age=template.max_age,
            evicted=cp.dedupe_evicted,
        )

    def rewind(self, target: float) -> None:
        """Before rolling forward to recorded time ``target``: jump to the latest
        checkpoint at or before it, if that is behind the player (it is past ``target``)
        or ahead of it (once the player has been to the end, its log is kept, so a
        checkpoint's log can be restored forwards too). Otherwise stay."""
        rows_due = int(np.searchsorted(self.timeline.times, target, side="right"))
        k = bisect.bisect_right([cp.i for cp in self.checkpoints], rows_due) - 1
        if self.i <= rows_due:  # not past target: roll forward, or jump ahead
            jump = k >= 0 and self.checkpoints[k].i > self.i and self._full is not None
            if jump and not self._restore(k):
                self.reset()
            return
        if k < 0 or not self._restore(k):
            self.reset()

    def seek_to(self, target: float) -> None:
        """Go to recorded time ``target`` quietly (checkpoints first, then rows): the state
        is then what playing from the start up to ``target`` leaves."""
        self.rewind(target)
        quiet, self.quiet = self.quiet, True
        try:
            while not self.done and self.next_time <= target:
                self.advance(target, 1 << 30)
        finally:
            self.quiet = quiet

    def _restore(self, k: int) -> bool:
        cp = self.checkpoints[k]
        if self._full is not None:
            ok = self.log.restore_prefix(self._full, cp.log_mark)
        else:
            ok = cp.i <= self.i and self.log.truncate(cp.log_mark)
        if not ok:
            self.checkpoints.clear()  # the log overflowed: rebuild from the start
            self._full = None
            return False
        pipeline = self._copy(cp.pipeline)
        pipeline.use_deduper(self._deduper_at(k))
        pipeline.set_on_apply(self.on_apply)
        for state in pipeline.adopt_topics(self.topic_states):
            cfg = self.configs[state.name]
            pipeline.reset_topic(state, cfg.ordering, gap_timeout=cfg.gap_timeout)
        self.pipeline = pipeline
        self.i, self.clock, self._next_check = cp.i, cp.clock, cp.next_check
        self.state = cp.state
        return True

    # -- one row ----------------------------------------------------------------------

    def _step(self, i: int) -> None:
        tl = self.timeline
        t, src, k = float(tl.times[i]), int(tl.src[i]), int(tl.idx[i])
        if src == FRAME:
            data, kind, transport, attempt = self._reader.get(k)
            pipeline = self.pipeline
            if kind == "frame":
                pipeline.connection(transport, attempt)
                pipeline.feed(data, t)
                # The session checks gaps on a timer while subscribed: do the same in
                # recorded time (it only reports gaps; the re-subscription is recorded).
                if t >= self._next_check and self.state.status is Status.SUBSCRIBED:
                    self._next_check = t + MAINTENANCE_INTERVAL
                    pipeline.check(t)  # marks those topics replaying
            elif kind == "topics":
                self._set_topics(json.loads(data))
            elif kind == "seed":
                pipeline.feed(data, t)
        elif src == STATE:
            row = tl.states[k]
            self.log.append_state(*row)
            at, status, previous, reason, attempt, _ = row
            self.state = ConnectionState(
                Status(status),
                Status(previous) if previous else None,
                reason or "",
                attempt,
                None,
                self.pipeline.transport,
                at,
            )
            if not self.quiet and self.on_state is not None:
                self.on_state(self.state)
        elif src == HEARTBEAT:
            self.log.append_heartbeat(*tl.heartbeats[k])
        elif src == MUTATION:
            self.log.append_mutation(*tl.mutations[k])

    # -- topics -------------------------------------------------------------------------

    def _set_topics(self, configs: dict[str, Any]) -> None:
        """The recorded topic set changed: drop the topics gone, (re)start the new ones."""
        pipeline = self.pipeline
        for name in [n for n in pipeline.topics if n not in configs]:
            pipeline.remove_topic(name)
        for name, raw in configs.items():
            if name not in pipeline.topics:
                ordering, gap_timeout = str(raw["ordering"]), float(raw["gap_timeout"])
                pipeline.attach_topic(self.topic_states[name], ordering, gap_timeout=gap_timeout)
