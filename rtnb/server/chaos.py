"""Fault injection: ``srv.chaos``.

Per-subscriber faults act on live ``event`` frames as they are fanned out to
each subscriber (replays and control frames are left intact, so recovery can
always succeed): ``drop``, ``duplicate``, ``reorder`` (an event is held back
and released after 1..``reorder_window`` later events, or after
:data:`REORDER_FLUSH` seconds if none come) and ``delay_ms=(lo, hi)``. Every
probability is drawn per subscriber per event from one seeded RNG.

Polling has no push to fault: a poll response carries the events after the
client's cursor, read from the log. The same faults act on those events
(:meth:`Chaos.shape`): dropped, duplicated, moved 1..``reorder_window``
places later within the response, and the response delayed by a draw from
``delay_ms``. The client repairs a dropped event from its own cursor (built
from what it applied), so recovery still always succeeds.

Server-wide faults: ``disconnect_all()``, ``stall(seconds)`` (a silent network
cut: connections stay open, nothing is sent or processed, frames are lost),
``stall_heartbeats(seconds)``, ``expire_tokens()`` and ``restart(keep_data)``.

Every injected fault is counted in :attr:`Chaos.counts`, and the per-event ones
are also recorded in :attr:`Chaos.injected` as ``(fault, topic, sequence)`` so
a test can compare what a client saw with what was done to it.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..protocol.errors import ServerStopped
from .storage import LogRecord

if TYPE_CHECKING:
    from .session import Session

#: Seconds after which held-back (reordered) events are released anyway.
REORDER_FLUSH: Final = 0.05
#: Per-event faults recorded in ``Chaos.injected`` (the most recent ones).
INJECTED_LIMIT: Final = 100_000

COUNTERS: Final = (
    "dropped",
    "duplicated",
    "reordered",
    "delayed",
    "disconnects",
    "stalls",
    "stalled_frames",
    "stalled_inbound",
    "heartbeat_stalls",
    "heartbeats_skipped",
    "tokens_expired",
    "restarts",
)


class _Target(Protocol):
    def _chaos_call(self, name: str, *args: Any) -> Any: ...


class Chaos:
    """Fault injection for one server handle; survives ``restart``."""

    def __init__(self, target: _Target | None = None, seed: int | None = None) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.injected: collections.deque[tuple[str, str, int]] = collections.deque(
            maxlen=INJECTED_LIMIT
        )
        self.drop = self.duplicate = self.reorder = 0.0
        self.reorder_window = 3
        self.delay_ms: tuple[float, float] = (0.0, 0.0)
        self.active = False  # any per-subscriber fault set
        self.cut_until = 0.0
        self.heartbeats_until = 0.0

    # -- user API (any thread) -------------------------------------------------

    def set(
        self,
        *,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_window: int = 3,
        delay_ms: tuple[float, float] | float = (0.0, 0.0),
        seed: int | None = None,
    ) -> None:
        """Set per-subscriber faults; ``set()`` with no arguments turns them all off."""
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if reorder_window < 1:
            raise ValueError(f"reorder_window must be >= 1 event, got {reorder_window}")
        lo, hi = (delay_ms, delay_ms) if isinstance(delay_ms, int | float) else delay_ms
        if not 0 <= lo <= hi:
            raise ValueError(f"delay_ms must be (lo, hi) with 0 <= lo <= hi, got {delay_ms}")
        if seed is not None:
            self._rng.seed(seed)
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        self.reorder_window = reorder_window
        self.delay_ms = (float(lo), float(hi))
        self.active = bool(drop or duplicate or reorder or hi)

    @property
    def counts(self) -> dict[str, int]:
        """Every injected fault so far, by kind (a copy)."""
        with self._lock:
            return dict(self._counts)

    def disconnect_all(self) -> int:
        """Close every connection (code 1001, "going away"); returns how many."""
        n = int(self._call("disconnect_all"))
        self.count("disconnects", n)
        return n

    def stall(self, seconds: float) -> None:
        """A silent network cut for ``seconds``: connections stay open, nothing flows."""
        self.count("stalls")
        self.cut_until = time.monotonic() + seconds

    def stall_heartbeats(self, seconds: float) -> None:
        """Send no heartbeats for ``seconds`` (events still flow)."""
        self.count("heartbeat_stalls")
        self.heartbeats_until = time.monotonic() + seconds

    def expire_tokens(self) -> int:
        """Treat every token minted so far as expired; close their connections 4401."""
        n = int(self._call("expire_tokens"))
        self.count("tokens_expired", n)
        return n

    def restart(self, keep_data: bool = True) -> None:
        """Stop the server (connections close 1012) and start it again on the same port.

        ``keep_data=False`` starts every log afresh under a new epoch, so old
        replay tokens answer ``replay: "unavailable"``. With the Redis store the
        topics are emptied *in Redis*: every gateway sharing it starts afresh.
        """
        self.count("restarts")
        self._call("restart", keep_data)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
        self.injected.clear()

    # -- server side (event loop) ----------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def is_cut(self) -> bool:
        if self.cut_until and time.monotonic() < self.cut_until:
            return True
        self.cut_until = 0.0
        return False

    def heartbeats_stalled(self) -> bool:
        if self.heartbeats_until and time.monotonic() < self.heartbeats_until:
            return True
        self.heartbeats_until = 0.0
        return False

    def deliver(self, session: Session, record: LogRecord) -> None:
        """Push one live event to one subscriber, through the configured faults."""
        rng = self._rng
        if self.drop and rng.random() < self.drop:
            self._note("dropped", record)
            return
        self._route(session, record)
        if self.duplicate and rng.random() < self.duplicate:
            self._note("duplicated", record)
            self._route(session, record)

    def shape(self, records: list[LogRecord]) -> tuple[list[LogRecord], float]:
        """The events of one poll response through the configured faults.

        Returns the records to send, in the order to send them, and how many
        seconds to hold the response back (0.0 without ``delay_ms``).
        """
        if not self.active or not records:
            return records, 0.0
        rng = self._rng
        out: list[LogRecord] = []
        for record in records:
            if self.drop and rng.random() < self.drop:
                self._note("dropped", record)
                continue
            out.append(record)
            if self.duplicate and rng.random() < self.duplicate:
                self._note("duplicated", record)
                out.append(record)
        if self.reorder:
            for i in range(len(out) - 1):
                if rng.random() < self.reorder:
                    j = min(len(out) - 1, i + rng.randint(1, self.reorder_window))
                    self._note("reordered", out[i])
                    out.insert(j, out.pop(i))
        lo, hi = self.delay_ms
        if not hi:
            return out, 0.0
        for record in out:
            self._note("delayed", record)
        return out, rng.uniform(lo, hi) / 1000.0

    def _note(self, fault: str, record: LogRecord) -> None:
        self.count(fault)
        self.injected.append((fault, record.topic, record.sequence))

    def _route(self, session: Session, record: LogRecord) -> None:
        rng = self._rng
        if self.reorder and rng.random() < self.reorder:
            self._note("reordered", record)
            if not session.held:
                loop = asyncio.get_running_loop()
                loop.call_later(REORDER_FLUSH, self._release_all, session)
            session.held.append((rng.randint(1, self.reorder_window), record))
            return
        lo, hi = self.delay_ms
        if hi:
            self._note("delayed", record)
            delay = rng.uniform(lo, hi) / 1000.0
            asyncio.get_running_loop().call_later(delay, session.push, record)
        else:
            session.push(record)
        if session.held:
            self._tick_held(session)

    def _tick_held(self, session: Session) -> None:
        keep: list[tuple[int, LogRecord]] = []
        for countdown, held in session.held:
            if countdown <= 1:
                session.push(held)
            else:
                keep.append((countdown - 1, held))
        session.held = keep

    def _release_all(self, session: Session) -> None:
        held, session.held = session.held, []
        for _, record in held:
            session.push(record)

    def _call(self, name: str, *args: Any) -> Any:
        if self._target is None:
            raise ServerStopped(f"chaos.{name}() needs a running server")
        return self._target._chaos_call(name, *args)


def parse_spec(spec: str) -> dict[str, Any]:
    """``"drop=0.01,duplicate=0.05,delay_ms=0-50,seed=7"`` -> keyword arguments of ``set``."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"chaos spec {part!r}: expected name=value")
        if name in ("drop", "duplicate", "reorder"):
            out[name] = float(value)
        elif name in ("reorder_window", "seed"):
            out[name] = int(value)
        elif name == "delay_ms":
            lo, _, hi = value.partition("-")
            out[name] = (float(lo), float(hi or lo))
        else:
            raise ValueError(
                f"chaos spec: unknown fault {name!r}; expected drop, duplicate, reorder, "
                "reorder_window, delay_ms or seed"
            )
    return out
