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
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from ..core.dedupe import Deduper
from ..core.merge import MergeFn
from ..core.orderer import make_orderer
from ..core.pipeline import Pipeline, TopicState
from ..core.status import Status
from ..core.store import TopicStore
from ..protocol.frames import Event
from ..telemetry.log import EnvelopeLog
from .replay_timeline import FRAME, HEARTBEAT, MUTATION, STATE, FrameReader, Timeline, TopicConfig
from .session import MAINTENANCE_INTERVAL, ConnectionState

__all__ = ["Player"]

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
    ) -> None:
        self.timeline = timeline
        self.log = log
        self.configs: dict[str, TopicConfig] = dict(timeline.topics)
        self._merge = dict(merge or {})
        self._reader = FrameReader(timeline.frames)
        #: one TopicState per recorded topic, for the whole life of the player
        self.topic_states: dict[str, TopicState] = {
            name: TopicState(
                name,
                make_orderer(name, cfg.ordering, gap_timeout=cfg.gap_timeout),
                TopicStore(name, self._merge.get(name)),
            )
            for name, cfg in self.configs.items()
        }
        self.on_state = on_state
        self.on_apply: OnApply | None = None
        #: while True, state changes are not reported (a seek reports the last one)
        self.quiet = False
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
        self.pipeline = Pipeline(self.log, deduper=Deduper())
        self.pipeline.on_apply = self.on_apply
        for name, state in self.topic_states.items():
            self._clear_topic(state, self.configs[name])
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

    def set_on_apply(self, callback: OnApply | None) -> None:
        self.on_apply = callback
        self.pipeline.on_apply = callback

    def advance(self, until: float, limit: int) -> None:
        """Process up to ``limit`` rows whose recorded time is at most ``until``."""
        times, n = self.timeline.times, len(self.timeline)
        stop = min(n, self.i + limit)
        while self.i < stop and times[self.i] <= until:
            self._step(self.i)
            self.i += 1
        if self.i:
            self.clock = max(self.clock, float(times[self.i - 1]))

    # -- one row ----------------------------------------------------------------------

    def _step(self, i: int) -> None:
        tl = self.timeline
        t, src, k = float(tl.times[i]), int(tl.src[i]), int(tl.idx[i])
        if src == FRAME:
            data, kind, transport, attempt = self._reader.get(k)
            pipeline = self.pipeline
            if kind == "frame":
                pipeline.transport, pipeline.attempt = transport, attempt
                pipeline.feed(data, t)
                # The session checks gaps on a timer while subscribed: do the same in
                # recorded time (it only reports gaps; the re-subscription is recorded).
                if t >= self._next_check and self.state.status is Status.SUBSCRIBED:
                    self._next_check = t + MAINTENANCE_INTERVAL
                    for gap in pipeline.check(t):
                        pipeline.topics[gap.topic].status = "replaying"
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
        topics = self.pipeline.topics
        for name in [n for n in topics if n not in configs]:
            self.pipeline.remove_topic(name)
        for name, raw in configs.items():
            if name in topics:
                continue
            cfg = TopicConfig(str(raw["ordering"]), float(raw["gap_timeout"]))
            state = self.topic_states[name]
            self._clear_topic(state, cfg)
            topics[name] = state

    def _clear_topic(self, state: TopicState, cfg: TopicConfig) -> None:
        """Make ``state`` what a fresh subscription would be (handles keep pointing at it)."""
        state.orderer = make_orderer(state.name, cfg.ordering, gap_timeout=cfg.gap_timeout)
        state.store.replace(())
        state.store.pending.clear()
        state.status = "pending"
        state.last_token = state.last_event_at = state.replay_until = None
        state.unavailable = False
        state.applied = state.gaps = state.unrecoverable = 0
