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
from collections.abc import Callable, Sequence
from typing import Any

import anywidget

from ..client.source import Source
from .feed import Feed

__all__ = ["RtnbWidget", "connection_of"]

logger = logging.getLogger("rtnb.widgets")


def connection_of(source: Any) -> Source:
    """The :class:`rtnb.Source` behind a connection, a replay or a topic handle.

    Anything implementing :class:`rtnb.Source` works: a live :class:`rtnb.Connection`
    or an ``rtnb.replay(...)``; widgets read nothing else.
    """
    from ..client.topic import Topic

    if isinstance(source, Topic):
        return source.connection
    if isinstance(source, Source):
        return source
    raise TypeError(
        f"expected an rtnb Connection, replay or Topic (rtnb.connect / rtnb.replay / "
        f"conn.subscribe), got {type(source).__name__}"
    )


def clock_of(conn: Source) -> Callable[[], float]:
    """The wall clock ages are measured on: a replay's own clock, else ``time.time``."""
    return conn.now


def is_live(conn: Source) -> bool:
    """True for a live connection (a replay cannot mutate)."""
    from ..client.connection import Connection

    return isinstance(conn, Connection)


class RtnbWidget(anywidget.AnyWidget):
    """Base class: a feed on the runtime thread plus the browser message protocol."""

    _feed: Feed | None = None

    def __init__(self, **traits: Any) -> None:
        super().__init__(**traits)
        self._feed: Feed | None = None
        self.on_msg(self._dispatch)

    # -- feed ------------------------------------------------------------------------

    def _attach(self, conn: Source, make: Callable[[Callable[..., None]], Feed]) -> Feed:
        """Create the feed on the runtime thread (``make(send)``) and start its ticks."""
        feed: Feed = conn.call(lambda: make(self._send_message), what="creating a widget feed")
        self._feed = feed
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
        return super()._repr_mimebundle_(**kwargs)

    def _dispatch(self, widget: Any, content: Any, buffers: Sequence[bytes]) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("t")
        if kind == "hello":
            if self._feed is not None:
                self._feed.request_snapshot()
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
        if self._feed is not None:
            self._feed.close()
        super().close()
