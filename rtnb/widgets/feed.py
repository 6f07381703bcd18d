"""Feeds: the runtime-thread side of a widget, turning store changes into messages.

Theory of operation
-------------------
The store is mutated on rtnb's runtime thread, so it is also *read* there: a
:class:`Feed` is a small state machine driven by a timer on the runtime loop
(``fps`` ticks a second). On each tick it asks its subclass whether there is
anything to say (:meth:`Feed.dirty`), checks the widget's own
:class:`~rtnb.widgets.budget.RateWindow` and the kernel-wide
:class:`~rtnb.widgets.budget.MessageBudget`, and if both allow, builds *one*
message and hands it to ``send`` (``widget.send``: ipykernel lets a comm
message leave from any thread, which is why widgets keep updating while a
notebook cell is busy).

Nothing is sent until the widget is displayed (:meth:`Feed.activate`) — a
widget nobody looks at costs one cheap tick per ``1/fps`` seconds. A
snapshot is sent when the browser asks for one (a view rendered, a page
reloaded, a sequence gap noticed: custom messages are never replayed) and
diffs after that. Every message carries ``seq``, one more than the last, so
the browser can tell when it missed one and ask for a snapshot.

Feeds hold their widget's ``send`` through a weak reference: a closed or
collected widget stops its feed at the next tick.

The last hop: every message says how often the kernel speaks (``ka``,
:data:`DEFAULT_KERNEL_KEEPALIVE` seconds), and a displayed feed that has said
nothing for that long sends ``{"t": "alive"}`` — outside the message budget, as
it is tiny and the browser relies on it: with none for ``2 × ka + 1`` seconds
every view says "No kernel — data as of …" (``openChannel`` in
``static/common.js``). A browser tab that wakes up sends ``ping``, answered
by a keep-alive at the next tick.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec

from .budget import DEFAULT_FPS, MessageBudget, RateWindow, get_budget

logger = logging.getLogger("rtnb.widgets")

Message = tuple[dict[str, Any], list[bytes]]
Send = Callable[[dict[str, Any], list[bytes]], None]

#: Highest ``fps`` a widget accepts (messages per second): 30.
MAX_FPS: Final = 30
#: Seconds of the per-widget rate window: 1.005 (one second, plus 5 ms of send jitter).
RATE_WINDOW: Final = 1.005
# The browser shows "No kernel" after 2 of them plus 1 s without any message.
#: Seconds between two messages of a displayed widget at most (``kernel_keepalive``): 1.0.
DEFAULT_KERNEL_KEEPALIVE: Final = 1.0


def _enc_hook(obj: Any) -> Any:
    """Values msgspec cannot encode natively are shown as their ``str``."""
    return str(obj)


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_buffer(value: Any) -> bytes:
    """JSON bytes for a binary message buffer (NaN and infinities become null)."""
    return _encoder.encode(value)


class Scheduler(Protocol):
    """Where feeds run: rtnb's runtime loop, or a manual one in tests."""

    def call_soon_threadsafe(self, fn: Callable[[], Any]) -> Any: ...

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Any: ...


class Feed:
    """Base class: ticks at ``fps``, sends at most one message per tick within budget."""

    def __init__(
        self,
        scheduler: Scheduler | asyncio.AbstractEventLoop,
        send: Send,
        *,
        fps: float = DEFAULT_FPS,
        budget: MessageBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        keepalive: float = DEFAULT_KERNEL_KEEPALIVE,
    ) -> None:
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
        if not keepalive > 0:
            raise ValueError(f"kernel_keepalive must be seconds > 0, got {keepalive!r}")
        self.keepalive = float(keepalive)
        self._last_sent = -float("inf")
        self._want_alive = False
        self.fps = float(fps)
        self.scheduler = scheduler
        self.window = RateWindow(self.fps, RATE_WINDOW)
        self.budget = budget if budget is not None else get_budget()
        self.clock = clock
        self.seq = 0
        self.sent = 0
        self.active = False
        self.closed = False
        self._send_ref: Callable[[], Send | None] = _weak_callable(send)
        self._want_snapshot = False
        self._handle: Any = None
        self._notices: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._lock = threading.Lock()

    # -- any thread ------------------------------------------------------------------

    def start(self) -> None:
        """Begin ticking on the scheduler (call once)."""
        self.scheduler.call_soon_threadsafe(self._tick)

    def activate(self) -> None:
        """The widget is displayed: send a snapshot, then diffs."""
        self._want_snapshot = True
        self.active = True

    def request_snapshot(self) -> None:
        """The browser asked for the full state (a view (re)rendered or missed a message)."""
        self._want_snapshot = True
        self.active = True

    def ping(self) -> None:
        """The browser asked whether the kernel is there (a tab woke up): answer next tick."""
        self._want_alive = True

    def notice(self, item: dict[str, Any]) -> None:
        """Queue a one-off notice (e.g. an action that no longer applies) for the next message."""
        self._notices.append(item)

    def close(self) -> None:
        self.closed = True
        try:
            self.scheduler.call_soon_threadsafe(self._cancel)
        except RuntimeError:  # the loop is closed (interpreter exit)
            self._teardown()

    # -- runtime thread -------------------------------------------------------------------

    @property
    def interval(self) -> float:
        return 1.0 / self.fps

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._teardown()

    def _tick(self) -> None:
        self._handle = None
        if self.closed:
            self._teardown()
            return
        try:
            self.flush(self.clock())
        except Exception:  # a widget must never take the runtime down
            logger.exception("rtnb widget feed %s failed to flush", type(self).__name__)
        if self.closed:
            self._teardown()
        else:
            self._handle = self.scheduler.call_later(self.interval, self._tick)

    def flush(self, now: float) -> bool:
        """Send one message if there is something to say and the budgets allow; True if sent."""
        send = self._send_ref()
        if send is None:
            self.closed = True
            return False
        if not self.active:
            return False
        snapshot = self._want_snapshot
        if not snapshot and not self._notices and not self.dirty(now):
            if self._want_alive or now - self._last_sent >= self.keepalive:
                return self._send(send, {"t": "alive"}, [], now)
            return False
        if not self.window.allows(now) or not self.budget.take(now):
            if now - self._last_sent >= self.keepalive:  # the budget never silences the kernel
                return self._send(send, {"t": "alive"}, [], now)
            return False
        if snapshot:
            self._want_snapshot = False
            content, buffers = self.snapshot(now)
        else:
            content, buffers = self.diff(now)
        if self._notices:
            content["notices"] = list(self._notices)
            self._notices.clear()
        # Count the message when it leaves (building a large diff takes a while): the
        # rate Jupyter Server and the browser see is that of the sends.
        self.window.take(self.clock())
        return self._send(send, content, buffers, now)

    def _send(self, send: Send, content: dict[str, Any], buffers: list[bytes], now: float) -> bool:
        self.seq += 1
        content["seq"] = self.seq
        content["ka"] = self.keepalive
        try:
            send(content, buffers)
        except Exception:
            logger.exception("rtnb widget: sending a %s message failed", content.get("t"))
            return False
        self._last_sent = now
        self._want_alive = False
        self.sent += 1
        return True

    # -- subclass hooks (runtime thread) ------------------------------------------------------

    def dirty(self, now: float) -> bool:
        """Whether a diff would carry anything."""
        raise NotImplementedError

    def snapshot(self, now: float) -> Message:
        """The full state, as ``(content, buffers)``."""
        raise NotImplementedError

    def diff(self, now: float) -> Message:
        """What changed since the last message, as ``(content, buffers)``."""
        return self.snapshot(now)

    def _teardown(self) -> None:
        """Release store cursors and callbacks (runtime thread, once closed)."""


def _weak_callable(fn: Send) -> Callable[[], Send | None]:
    """A weak reference to a bound method (or a strong one to a plain function)."""
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)
    return lambda: fn
