"""``rtnb.replay(log, speed=10)``: a recording played back as a connection.

A :class:`Replay` looks like a :class:`~rtnb.client.connection.Connection` to
everything that reads one -- ``subscribe`` returns real
:class:`~rtnb.client.topic.Topic` handles, and it implements :class:`~rtnb.client.source.Source` (``state``, ``on_state``,
``log``, ``topic_view``, ``open_rows``, ``loop``, ``call``, ``now``...) as a connection does -- so
``StreamTable``, ``Freshness``, ``LiveChart`` and the charts work on it unchanged.

Its input is the recording instead of a socket: every recorded frame is fed
through a fresh :class:`~rtnb.core.pipeline.Pipeline` (the same decode,
dedupe, order and merge as live) at its recorded time, scaled by ``speed``.
Given the same frames at the same times, the pipeline makes the same
decisions, so a replay of a complete recording ends with the live session's
topic states and outcome counts. Connection states, heartbeats and mutation
resolutions are copied from the recording into ``replay.log`` as the replay
passes them (they came from the server and the machine, not from the frames).

Time: the pipeline runs on *recorded* time, so the replay's log has the
recorded timestamps and lags. ``replay.position`` is the recorded instant
the replay has reached; topic freshness is measured against it, not against
the wall clock. The replay runs on rtnb's runtime thread, in slices, so reads
from the notebook interleave with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]

from ..core.ledger import MutationLedger, ResolutionCursor
from ..core.merge import MergeFn
from ..core.pipeline import TopicState
from ..core.status import Status
from ..protocol.errors import LocalProtocolError, WaitTimeout
from ..protocol.frames import Event
from ..telemetry.log import EnvelopeLog
from .base import BaseSource
from .mutation import Mutation
from .replay_player import Player
from .replay_timeline import Timeline
from .replay_topic import ReplayTopic, Timestamp, to_seconds
from .source import ConfirmedIdentity
from .state import ConnectionState
from .topic import Topic

#: Default playback speed (recorded seconds per wall-clock second): 10.
DEFAULT_SPEED: Final = 10.0
#: Timeline rows processed before the replay yields to other work on the loop: 2,000.
SLICE_ROWS: Final = 2_000
#: Longest single wait of the replay loop, in wall seconds: 0.25.
MAX_WAIT: Final = 0.25


def replay(
    log: EnvelopeLog | str | os.PathLike[str],
    speed: float | None = DEFAULT_SPEED,
    **options: Any,
) -> Replay:
    """Play a recording back as a connection-like object (see :class:`Replay`).

    ``log``: an :class:`rtnb.EnvelopeLog`, or the path of what ``conn.log.to_parquet`` or
    ``conn.record`` wrote (read with :meth:`rtnb.EnvelopeLog.read_parquet`).
    """
    if isinstance(log, str | os.PathLike):
        log = EnvelopeLog.read_parquet(log)
    elif not isinstance(log, EnvelopeLog):
        raise TypeError(
            f"rtnb.replay needs an EnvelopeLog or the path of a recording, got {type(log).__name__}"
        )
    return Replay(log, speed, **options)


class Replay(BaseSource):
    """A recording played back through the pipeline; connection-like (see module doc).

    ``speed``: recorded seconds per wall second (``None``: as fast as possible).
    ``paused``: start paused. ``merge``: ``{topic: merge_fn}`` for topics the
    live session subscribed with a custom merge (functions are not recorded).
    """

    def __init__(
        self,
        log: EnvelopeLog,
        speed: float | None = DEFAULT_SPEED,
        *,
        paused: bool = False,
        merge: Mapping[str, MergeFn] | None = None,
    ) -> None:
        recording = log.recording
        if recording is None or not len(recording):
            raise ValueError(
                "this log holds no recorded frames, so it cannot be replayed; record a session "
                "with conn.record(path) and read it with rtnb.EnvelopeLog.read_parquet(path)"
            )
        self._check_speed(speed)
        super().__init__()
        self.source = log
        self.url = "replay"
        self.payloads = recording.payloads
        self._speed = speed
        self._timeline = Timeline(log, recording)
        cap = log.capacity
        self.log = EnvelopeLog(
            envelope_capacity=max(cap["envelopes"], 2 * len(log), 2 * len(recording)),
            state_capacity=cap["states"],
            mutation_capacity=cap["mutations"],
            heartbeat_capacity=cap["heartbeats"],
        )
        #: never holds a mutation: a replay sends none
        self._ledger = MutationLedger()
        self._paused = paused
        self._closed = False
        self._done = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._seek_lock: asyncio.Lock | None = None  # created on the runtime loop
        self._seeking: tuple[float, float] | None = None  # (from, to) of a seek under way
        self._player = Player(self._timeline, self.log, merge=merge, on_state=self._notify_state)
        self._clock = self._player.clock
        self._anchor()
        if not paused:
            self.call(self._play, what="rtnb.replay")

    # -- what BaseSource asks of a replay ---------------------------------------------------

    _goes_on = "replay"

    async def _send_mutation(self, *args: Any) -> Mutation:
        raise LocalProtocolError("a replay is read-only: mutations cannot be sent")

    def _set_apply_hook(self, hook: Callable[[TopicState, Event, Any], None] | None) -> None:
        self._player.set_on_apply(hook)

    def _topic_released(self, topic: str) -> None:
        """Nothing ends: a replay plays every recorded topic, held or not."""

    # -- rtnb.Source: what widgets, charts and topics read ------------------------------------

    @property
    def topic_states(self) -> Mapping[str, TopicState]:
        """The replay pipeline's topic states (read them on the runtime thread)."""
        return self._player.pipeline.topics

    def open_resolutions(self) -> ResolutionCursor:
        """Always empty: a replay sends no mutations."""
        return self._ledger.open_resolutions()

    @property
    def identity(self) -> ConfirmedIdentity | None:
        """None: a replay is not authenticated by anyone."""
        return None

    def wait_identity(self, timeout: float = 5.0) -> ConfirmedIdentity | None:
        """None at once: a replay is not authenticated by anyone."""
        return None

    @property
    def live(self) -> bool:
        """False: a replay (read-only; it cannot mutate)."""
        return False

    @staticmethod
    def _check_speed(speed: float | None) -> None:
        if speed is not None and not (isinstance(speed, int | float) and speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._player.state

    def wait_for(self, status: Status | str, timeout: float | None = 10.0) -> ConnectionState:
        """Block until the replayed connection reaches ``status``; ``rtnb.WaitTimeout`` if not."""
        want = Status(status)
        reached = threading.Event()
        remove = self.on_state(lambda st: reached.set() if st.status is want else None)
        try:
            if self.status is not want and not reached.wait(timeout):
                raise WaitTimeout(f"replay not {want.value} within {timeout} s; now {self.state}")
        finally:
            remove()
        return self.state

    @property
    def recorded_topics(self) -> dict[str, str]:
        """``{topic: ordering}`` of every topic in the recording."""
        return {name: cfg.ordering for name, cfg in self._player.configs.items()}

    # -- position ------------------------------------------------------------------------

    @property
    def speed(self) -> float | None:
        return self._speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        self._check_speed(value)

        def change() -> None:
            self._clock = self.position_s
            self._speed = value
            self._anchor()

        self.call(change, what="replay.speed")

    @property
    def window_start(self) -> dt.datetime:
        """Where the recorded frames begin: a flight recorder's file (``conn.log.to_parquet``)
        holds only its most recent window, and a late ``conn.record`` starts late; before
        it the replay has no frames (see :attr:`seeded`)."""
        at = self.source.recording.info.get("window_start") if self.source.recording else None
        if at is None:
            at = float(self._timeline.frames.column("received_at")[0].as_py())
        return dt.datetime.fromtimestamp(float(at), dt.UTC)

    @property
    def seeded(self) -> bool:
        """True when the frames begin with a seed (a snapshot of the state then) instead of
        the connection's first frame: the replay shows the state from :attr:`window_start`
        on, not how it was reached."""
        recording = self.source.recording
        if recording is None:
            return False
        if "seeded" in recording.info:
            return bool(recording.info["seeded"])
        kinds = recording.frames.column("frame_kind").combine_chunks()
        kinds = kinds.cast(pa.string()) if pa.types.is_dictionary(kinds.type) else kinds
        return "seed" in set(kinds.to_pylist()[: 1 + len(self._timeline.topics) * 2])

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._timeline.start, dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._timeline.end, dt.UTC)

    @property
    def position_s(self) -> float:
        """The recorded instant reached, in unix seconds."""
        clock = self._clock
        if self._paused or self._closed or self._done.is_set() or self._speed is None:
            return clock
        ahead = self._anchor_rec + (time.monotonic() - self._anchor_wall) * self._speed
        return min(max(clock, ahead), max(clock, self._timeline.end))

    def now(self) -> float:
        """The replay's "now" (:attr:`position_s`), for ages of replayed data."""
        return self.position_s

    @property
    def position(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.position_s, dt.UTC)

    @property
    def progress(self) -> float:
        """Share of the recording's rows replayed so far (0..1)."""
        n = len(self._player)
        return 1.0 if not n else self._player.i / n

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def paused(self) -> bool:
        return self._paused

    # -- control ---------------------------------------------------------------------------

    def pause(self) -> None:
        def pause() -> None:
            if not self._paused:
                self._clock = self.position_s
                self._paused = True
                self._wake()

        self.call(pause, what="replay.pause")

    def resume(self) -> None:
        self.call(self._play, what="replay.resume")

    def seek(self, timestamp: Timestamp) -> None:
        """Jump to a recorded instant (rebuilding state from the start if it is earlier),
        and stay there: a playing replay is paused at ``timestamp``, so the topics show the
        state as of then (at 20× a replay that played on would be elsewhere by the next
        cell); :meth:`resume` plays on from there. The scrub bar (:meth:`start_seek`) keeps
        playing."""
        target = to_seconds(timestamp)
        self.pause()
        self._run(self._seek(target), what="replay.seek", timeout=None)

    async def seek_async(self, timestamp: Timestamp) -> None:
        target = to_seconds(timestamp)
        await asyncio.to_thread(self.pause)
        await self._runtime.wrap(self._seek(target))

    def start_seek(self, timestamp: Timestamp) -> concurrent.futures.Future[None]:
        """Begin a seek without waiting for it (what the scrub bar does); the future is
        done when it is. Seeks run one at a time, in the order asked; while one runs,
        :attr:`seek_progress` tells how far it got."""
        return asyncio.run_coroutine_threadsafe(self._seek(to_seconds(timestamp)), self.loop)

    @property
    def seek_progress(self) -> float | None:
        """How far the seek under way got (0..1), or None if none is under way. A seek
        into recorded time not played yet plays every row up to it (about 10 s for a
        million envelopes); later seeks there start from checkpoints."""
        span = self._seeking
        if span is None:
            return None
        start, target = span
        if target <= start:
            return 1.0
        at = min(self._player.next_time, target)
        return max(0.0, min(1.0, (at - start) / (target - start)))

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the replay has played everything; False if ``timeout`` passed first."""
        return self._done.wait(timeout)

    def close(self) -> None:
        """Stop playing; topics and the log stay readable."""

        def close() -> None:
            self._closed = True
            if self._task is not None:
                self._task.cancel()
                self._task = None

        if self._runtime.thread.is_alive():
            self.call(close, what="replay.close")

    # -- topics ------------------------------------------------------------------------------

    def subscribe(self, topic: str, ordering: str | None = None, **_: Any) -> Topic:
        """A handle on a recorded topic (``ordering``, if given, must match the recording)."""

        def sub() -> Topic:
            state = self._player.topic_states.get(topic)
            if state is None:
                raise ValueError(
                    f"topic {topic!r} is not in this recording; it has "
                    f"{', '.join(sorted(self._player.topic_states)) or 'no topics'}"
                )
            if ordering is not None and ordering != state.ordering:
                raise LocalProtocolError(
                    f"topic {topic!r} was recorded with ordering {state.ordering!r}; "
                    "replay it with the same ordering (or leave ordering out)"
                )
            return ReplayTopic(self, state)

        return self._add_handle(topic, sub, what=f"replay.subscribe({topic!r})")

    async def subscribe_async(self, topic: str, ordering: str | None = None, **kw: Any) -> Topic:
        return await asyncio.to_thread(self.subscribe, topic, ordering, **kw)

    # -- playing (runtime thread) --------------------------------------------------------------

    def _anchor(self) -> None:
        self._anchor_wall = time.monotonic()
        self._anchor_rec = self._clock

    def _wake(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _play(self) -> None:
        self._paused = False
        self._anchor()
        if self._task is None and not self._closed and not self._done.is_set():
            self._task = asyncio.get_running_loop().create_task(self._drive())
        self._wake()

    async def _drive(self) -> None:
        self._kick = kick = asyncio.Event()
        player = self._player
        try:
            while not player.done and not self._closed:
                if self._paused:
                    kick.clear()
                    await kick.wait()
                    continue
                if self._speed is None:
                    player.advance(math.inf, SLICE_ROWS)
                    self._clock = player.clock
                    await asyncio.sleep(0)
                    continue
                now_rec = self._anchor_rec + (time.monotonic() - self._anchor_wall) * self._speed
                player.advance(now_rec, SLICE_ROWS)
                self._clock = player.clock
                if not player.done and not self._paused:
                    due = self._anchor_wall + (player.next_time - self._anchor_rec) / self._speed
                    kick.clear()
                    with contextlib.suppress(TimeoutError):
                        wait = min(MAX_WAIT, max(0.0, due - time.monotonic()))
                        await asyncio.wait_for(kick.wait(), wait)
            if player.done:
                self._clock = max(self._clock, self._timeline.end)
                self._done.set()
        except Exception as exc:  # never die silently: say what broke the replay
            self.callback_failed("replay", exc)
            raise
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _seek(self, target: float) -> None:
        if self._seek_lock is None:
            self._seek_lock = asyncio.Lock()
        async with self._seek_lock:  # one at a time: they share the player
            await self._seek_now(target)

    async def _seek_now(self, target: float) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        player = self._player
        before = player.state
        player.rewind(target)
        self._seeking = (player.clock, target)
        try:
            while not player.done and player.next_time <= target:
                player.advance(target, SLICE_ROWS, quiet=True)
                await asyncio.sleep(0)
        finally:
            self._seeking = None
        self._clock = max(self._timeline.start, min(target, self._timeline.end))
        if player.done and target >= self._timeline.end:
            self._done.set()
        else:
            self._done.clear()
        if player.state is not before:
            self._notify_state(player.state)
        self._anchor()
        if not self._paused:
            self._play()

    def __repr__(self) -> str:
        state = "done" if self.done else "paused" if self._paused else "playing"
        speed = "as fast as possible" if self._speed is None else f"{self._speed:g}x"
        window = (
            f" from a seed at {self.window_start.isoformat(timespec='seconds')}"
            if self.seeded
            else ""
        )
        return (
            f"<Replay {len(self._timeline):,} rows{window} {state} {speed} at "
            f"{self.position.isoformat(timespec='seconds')} ({self.progress:.0%}) "
            f"topics={sorted(self._player.topic_states)}>"
        )
