"""``RtnbWidget``: what every rtnb widget shares on the Python side.

A widget is a thin anywidget: a few small synced traits, and a
:class:`~rtnb.widgets.feed.Feed` on rtnb's runtime thread that sends the
bulky updates as custom messages. This class wires the two together:

* the feed is created *on* the runtime thread (it opens a cursor on the
  store, which that thread mutates);
* displaying the widget activates the feed (a snapshot goes out at once);
* browser messages arrive on the kernel's main thread: ``hello`` (a view
  rendered and wants a snapshot) is forwarded to the feed; subclasses handle
  the rest in :meth:`RtnbWidget._on_message`;
* ``close()`` stops the feed, which releases its store cursor.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import anywidget

from ..client.source import Source, TopicHandle
from ..core.freshness import check_stale_after
from .feed import Feed
from .recorded import RECORDED_INTERVAL, RecordedView

logger = logging.getLogger("rtnb.widgets")


def connection_of(source: Any) -> Source:
    """The :class:`rtnb.Source` behind a connection, a replay or a topic handle.

    Anything implementing :class:`rtnb.Source` works: a live :class:`rtnb.Connection`
    or an ``rtnb.replay(...)``; widgets read nothing else.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, TopicHandle):
        return source.connection
    raise TypeError(
        f"expected an rtnb Connection, replay or Topic (rtnb.connect / rtnb.replay / "
        f"conn.subscribe), got {type(source).__name__}"
    )


def clock_of(conn: Source) -> Callable[[], float]:
    """The wall clock ages are measured on: a replay's own clock, else ``time.time``."""
    return conn.now


def is_live(conn: Source) -> bool:
    """True for a live connection (a replay cannot mutate)."""
    return conn.live


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where display ids and exports exist)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class RtnbWidget(anywidget.AnyWidget):
    """Base class: a feed on the runtime thread plus the browser message protocol."""

    _feed: Feed | None = None

    def __init__(self, **traits: Any) -> None:
        super().__init__(**traits)
        self._feed: Feed | None = None
        self._held: list[Any] = []
        #: the recorded twins on display, by key ("": the widget's own; else a part's id)
        self._twins: dict[str, RecordedView] = {}
        self._recorded_from: Source | None = None
        self.on_msg(self._dispatch)

    # -- feed ------------------------------------------------------------------------

    def _expect_events(self, topic: Any, stale_after: float | None) -> None:
        """Make ``topic`` read ``quiet`` after ``stale_after`` s without an event.

        Through the :class:`rtnb.Source` seam: a handle of our own subscribed
        with ``stale_after`` (released on :meth:`close`), so the core decides.
        """
        if stale_after is None:
            return
        check_stale_after(stale_after)
        self._held.append(topic.connection.subscribe(topic.name, stale_after=stale_after))

    def _attach(self, conn: Source, make: Callable[[Callable[..., None]], Feed]) -> Feed:
        """Create the feed on the runtime thread (``make(send)``) and start its ticks."""
        feed: Feed = conn.call(lambda: make(self._send_message), what="creating a widget feed")
        self._feed = feed
        self._recorded_from = conn
        feed.start()
        return feed

    def _send_message(self, content: dict[str, Any], buffers: Sequence[bytes]) -> None:
        """Runs on the runtime thread; ipykernel's IOPub socket is safe to use from it."""
        self.send(content, list(buffers))

    @property
    def messages_sent(self) -> int:
        """Custom messages this widget has sent so far."""
        return 0 if self._feed is None else self._feed.sent

    # -- display and browser messages -------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._feed is not None:
            self._feed.activate()
        self._show_recorded()
        return super()._repr_mimebundle_(**kwargs)

    # -- the recorded twin (exports, kernel-less viewers: see rtnb.widgets.recorded) ---------

    def _render_recorded(self) -> str:
        """What this widget shows now, as recorded HTML (runtime thread); "": nothing."""
        return ""

    def _show_recorded(self) -> None:
        """Display the recorded twin beside the view and keep it current (Jupyter kernels)."""
        self._show_twin("", self._feed, lambda widget: widget._render_recorded())

    def _show_twin(
        self, key: str, feed: Feed | None, render_of: Callable[[RtnbWidget], str]
    ) -> None:
        """Display the twin ``key`` of this widget (``render_of(widget)`` on the runtime
        thread) and keep it current while ``feed`` runs: a widget's own (key ``""``),
        or one per part of a widget made of parts (the Dashboard)."""
        conn = self._recorded_from
        if conn is None or feed is None or feed.closed or not _in_kernel():
            return
        ref = weakref.ref(self)

        def render() -> str:
            widget = ref()
            return "" if widget is None else render_of(widget)

        try:
            first: str = conn.call(render, what="recording a widget view")
        except Exception:  # a closed connection: nothing to record
            logger.debug("rtnb widget: no recorded view", exc_info=True)
            return
        if not first:
            return
        shown = self._twins.get(key)
        if shown is not None:  # displayed again: one more twin, same display id
            shown.show(first)
            return

        def call(fn: Callable[[], str]) -> str:
            text: str = conn.call(fn, what="recording a widget view")
            return text

        view = RecordedView(f"rtnb-recorded-{uuid.uuid4().hex}", render, call)
        self._twins[key] = view
        view.show(first)
        loop = conn.loop

        def tick() -> None:
            if ref() is None or feed.closed:
                return
            try:
                view.refresh()
            except Exception:
                logger.exception("rtnb widget: refreshing its recorded view failed")
            loop.call_later(RECORDED_INTERVAL, tick)

        loop.call_soon_threadsafe(lambda: loop.call_later(RECORDED_INTERVAL, tick))

    def _dispatch(self, widget: Any, content: Any, buffers: Sequence[bytes]) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("t")
        if kind == "hello":
            if self._feed is not None:
                self._feed.request_snapshot()
            return
        if kind == "ping":  # a browser tab woke up: is the kernel there?
            if self._feed is not None:
                self._feed.ping()
            return
        try:
            self._on_message(content)
        except Exception:
            logger.exception("rtnb widget: handling a %r message failed", kind)

    def _on_message(self, content: dict[str, Any]) -> None:
        """Subclasses handle their own browser messages here (main thread)."""

    def __panel__(self) -> Any:
        """Panel shows it with anywidget's front end from the kernel, no CDN (``rtnb.panel``)."""
        from .. import panel

        return panel.pane(self)

    def close(self) -> None:
        for view in getattr(self, "_twins", {}).values():  # each keeps what it showed last
            view.closed = True
        if self._feed is not None:
            self._feed.close()
        held, self._held = getattr(self, "_held", []), []  # __init__ may not have run
        for handle in held:
            try:
                handle.unsubscribe()
            except Exception:  # the runtime is gone (interpreter exit): nothing to release
                break
        super().close()
