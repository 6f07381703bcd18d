"""``rtnb.replay(log, speed=10)``: a recording played back as a connection.

A :class:`Replay` looks like a :class:`~rtnb.client.connection.Connection` to
everything that reads one -- ``subscribe`` returns real
:class:`~rtnb.client.topic.Topic` handles, and it implements :class:`~rtnb.client.source.Source` (``state``, ``on_state``,
``log``, ``topic_states``, ``loop``, ``call``, ``now``...) as a connection does -- so
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
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

import pyarrow as pa  # type: ignore[import-untyped]

from ..core.ledger import MutationLedger, ResolutionCursor
from ..core.merge import MergeFn
from ..core.pipeline import TopicState
from ..core.status import Status
from ..protocol.errors import LocalProtocolError, WaitTimeout
from ..telemetry.log import EnvelopeLog
from .mutation import Mutation
from .replay_player import Player
from .replay_timeline import Timeline
from .replay_topic import ReplayTopic, Timestamp, to_seconds
from .runtime import DEFAULT_CALL_TIMEOUT, Runtime, get_runtime
from .session import ConnectionState
from .source import ConfirmedIdentity
from .topic import Topic

logger = logging.getLogger("rtnb")

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


class Replay:
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
        self.source = log
        self.url = "replay"
        self.payloads = recording.payloads
        self._speed = speed
        self._runtime: Runtime = get_runtime()
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
        self._handles: dict[str, list[Topic]] = {}
        self._state_callbacks: list[Callable[[ConnectionState], Any]] = []
        self._paused = paused
        self._closed = False
        self._done = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._seek_lock: asyncio.Lock | None = None  # created on the runtime loop
        self._seeking: tuple[float, float] | None = None  # (from, to) of a seek under way
        self._player = Player(self._timeline, self.log, merge=merge, on_state=self._notify)
        self._clock = self._player.clock
        self._anchor()
        if not paused:
            self._call(self._play, what="rtnb.replay")

    # -- plumbing (rtnb.Source: what widgets, charts and topics use) ----------------------

    def call(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Run ``fn`` on rtnb's runtime thread (directly if already there); its result."""
        if self._runtime.in_runtime_thread():
            return fn()

        async def call() -> Any:
            return fn()

        return self._runtime.run(call(), what=what, timeout=DEFAULT_CALL_TIMEOUT)

    _call = call

    def _run(self, coro: Coroutine[Any, Any, Any], *, what: str) -> Any:
        return self._runtime.run(coro, what=what, timeout=None)

    async def _mutate(self, *args: Any) -> Mutation:
        raise LocalProtocolError("a replay is read-only: mutations cannot be sent")

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """rtnb's runtime event loop (the replay plays on it)."""
        return self._runtime.loop

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

    def _callback_failed(self, what: str, exc: BaseException) -> None:
        logger.warning(
            "rtnb: %s raised %s: %s (the replay continues)", what, type(exc).__name__, exc
        )

    @staticmethod
    def _check_speed(speed: float | None) -> None:
        if speed is not None and not (isinstance(speed, int | float) and speed > 0):
            raise ValueError(f"speed must be a positive number or None, got {speed!r}")

    # -- state -------------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._player.state

    @property
    def status(self) -> Status:
        return self._player.state.status

    @property
    def transport(self) -> str:
        return self._player.state.transport

    def on_state(self, callback: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        """Call ``callback(state)`` when the replay passes a recorded transition."""
        self._state_callbacks.append(callback)

        def remove() -> None:
            if callback in self._state_callbacks:
                self._state_callbacks.remove(callback)

        return remove

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
    def topics(self) -> dict[str, Topic]:
        return {name: hs[0] for name, hs in self._handles.items() if hs}

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

        self._call(change, what="replay.speed")

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

        self._call(pause, what="replay.pause")

    def resume(self) -> None:
        self._call(self._play, what="replay.resume")

    def seek(self, timestamp: Timestamp) -> None:
        """Jump to a recorded instant (rebuilding state from the start if it is earlier),
        and stay there: a playing replay is paused at ``timestamp``, so the topics show the
        state as of then (at 20× a replay that played on would be elsewhere by the next
        cell); :meth:`resume` plays on from there. The scrub bar (:meth:`start_seek`) keeps
        playing."""
        target = to_seconds(timestamp)
        self.pause()
        self._run(self._seek(target), what="replay.seek")

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
            self._call(close, what="replay.close")

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Replay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

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
            handle = ReplayTopic(self, state)
            self._handles.setdefault(topic, []).append(handle)
            self._player.set_on_apply(self._on_apply)
            return handle

        result: Topic = self._call(sub, what=f"replay.subscribe({topic!r})")
        return result

    async def subscribe_async(self, topic: str, ordering: str | None = None, **kw: Any) -> Topic:
        return await asyncio.to_thread(self.subscribe, topic, ordering, **kw)

    def _release(self, handle: Topic) -> None:
        def release() -> None:
            handles = self._handles.get(handle.name, [])
            if handle in handles:
                handles.remove(handle)

        self._call(release, what="topic.unsubscribe")

    async def _release_async(self, handle: Topic) -> None:
        await asyncio.to_thread(self._release, handle)

    def _on_apply(self, ts: TopicState, event: Any, outcome: Any) -> None:
        for handle in self._handles.get(ts.name, ()):
            handle._dispatch(event, str(outcome))

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
            self._callback_failed("replay", exc)
            raise
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def _notify(self, state: ConnectionState) -> None:
        for cb in tuple(self._state_callbacks):
            try:
                cb(state)
            except Exception as exc:
                self._callback_failed("on_state callback", exc)

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
        player.quiet = True
        self._seeking = (player.clock, target)
        try:
            while not player.done and player.next_time <= target:
                player.advance(target, SLICE_ROWS)
                await asyncio.sleep(0)
        finally:
            player.quiet = False
            self._seeking = None
        self._clock = max(self._timeline.start, min(target, self._timeline.end))
        if player.done and target >= self._timeline.end:
            self._done.set()
        else:
            self._done.clear()
        if player.state is not before:
            self._notify(player.state)
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
