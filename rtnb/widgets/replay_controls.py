"""``ReplayControls(rep)``: play / pause / speed and a scrub bar for an ``rtnb.replay``.

The bar spans the recording's time; incidents (``log.incidents()`` of the
recording) are marked on it. Dragging or clicking it seeks the replay
(``rep.seek(t)``: checkpoints make that fast anywhere, see
:mod:`rtnb.client.replay_player`), so every ``StreamTable``, ``Freshness``,
``Dashboard`` and ``LiveChart`` of the replay shows the state at that instant.

Traits are small and synced (``start``, ``end``, ``incidents``, ``position``,
``playing``, ``speed``); the browser sends ``{"t": "seek", "at": s}``,
``play``, ``pause`` and ``{"t": "speed", "speed": x}``. While the replay plays,
the position is pushed every :data:`POSITION_TICK` seconds at most, each push drawing
on the kernel-wide message budget (:func:`rtnb.widgets.budget.get_budget`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Final

import traitlets

from .assets import css, esm
from .base import RtnbWidget
from .budget import get_budget

if TYPE_CHECKING:
    from ..client.replay import Replay

logger = logging.getLogger("rtnb")

#: Seconds between position pushes while playing: 0.25.
POSITION_TICK: Final = 0.25


def _incidents(rep: Replay) -> list[dict[str, Any]]:
    import pandas as pd

    frame = rep.source.incidents()
    reasons: list[Any] = (
        frame["reason"].tolist() if "reason" in frame.columns else [""] * len(frame)
    )
    out = []
    for start, end, reason in zip(
        frame["start"].tolist(), frame["end"].tolist(), reasons, strict=True
    ):
        s = float(start.timestamp())
        e = s if pd.isna(end) else float(end.timestamp())  # NaT: still open
        out.append({"start": s, "end": e, "reason": "" if pd.isna(reason) else str(reason)})
    return out


class ReplayControls(RtnbWidget):
    """Play, pause, speed and a scrub bar with incidents marked, driving ``rep``."""

    _esm = esm("replay_controls.js")
    _css = css()

    start = traitlets.Float(0.0).tag(sync=True)
    end = traitlets.Float(0.0).tag(sync=True)
    position = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    speed = traitlets.Float(10.0, allow_none=True).tag(sync=True)
    incidents = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: where the recorded frames begin (a flight recorder's window), and whether a seed
    window_start = traitlets.Float(0.0).tag(sync=True)
    seeded = traitlets.Bool(False).tag(sync=True)
    #: how far a seek under way got (0..1); -1: none under way
    seeking = traitlets.Float(-1.0).tag(sync=True)

    def __init__(self, rep: Replay, **traits: Any) -> None:
        super().__init__(
            start=rep.start.timestamp(),
            end=rep.end.timestamp(),
            position=rep.position_s,
            playing=not rep.paused and not rep.done,
            speed=rep.speed,
            incidents=_incidents(rep),
            window_start=rep.window_start.timestamp(),
            seeded=rep.seeded,
            **traits,
        )
        self.replay = rep
        self._closed = False
        self._budget = get_budget()
        # The bar's seeks run in the background (a first seek far ahead plays every row
        # up to it); while one runs, the newest asked for waits, older ones are dropped.
        self._seek_running: concurrent.futures.Future[None] | None = None
        self._seek_next: float | None = None
        self._seek_lock = threading.Lock()
        rep.loop.call_soon_threadsafe(self._tick)

    def _tick(self) -> None:
        """On the runtime loop: push the position while it moves, within the budget."""
        if self._closed:
            return
        rep = self.replay
        at = rep.now()
        playing = not rep.paused and not rep.done
        if (at != self.position or playing != self.playing) and self._budget.take():
            self.position, self.playing = at, playing
        progress = rep.seek_progress
        shown = -1.0 if progress is None else round(progress, 2)
        if shown != self.seeking and self._budget.take():
            self.seeking = shown
        rep.loop.call_later(POSITION_TICK, self._tick)

    def _begin_seek(self, at: float) -> None:
        with self._seek_lock:
            if self._seek_running is not None:
                self._seek_next = at  # the newest wins
                return
            self._seek_running = future = self.replay.start_seek(at)
        future.add_done_callback(self._seek_done)

    def _seek_done(self, future: concurrent.futures.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning("rtnb: replay seek failed: %r", future.exception())
        with self._seek_lock:
            self._seek_running, at, self._seek_next = None, self._seek_next, None
        if self._closed:
            return
        if at is not None:
            self._begin_seek(at)
        else:
            self.position, self.seeking = self.replay.now(), -1.0

    # -- browser -> kernel -----------------------------------------------------------

    def _on_message(self, content: dict[str, Any]) -> None:
        kind = content.get("t")
        rep = self.replay
        if kind == "seek":
            at = float(content["at"])
            if not math.isfinite(at):
                return
            self._begin_seek(min(max(at, self.start), self.end))
        elif kind == "play":
            rep.resume()
            self.playing = True
        elif kind == "pause":
            rep.pause()
            self.playing = False
        elif kind == "speed":
            value = content.get("speed")
            rep.speed = None if value is None else float(value)
            self.speed = rep.speed

    # -- Python API (what the buttons do) ---------------------------------------------

    def seek(self, at: float) -> None:
        """Seek the replay to recorded time ``at`` (unix seconds) and wait for it (the bar
        does the same without waiting)."""
        if not math.isfinite(at):
            return
        # a scrub keeps playing if the replay was (rep.seek would pause it there)
        self.replay.start_seek(min(max(at, self.start), self.end)).result()
        self.position = self.replay.now()

    def close(self) -> None:
        self._closed = True
        super().close()

    def __repr__(self) -> str:
        return f"<ReplayControls {self.replay!r}>"
