"""``Freshness``: a compact status pill for a connection or one topic.

Shows the status (icon + word + colour), the age of the newest data (ticking
in the browser), attempt and next retry while reconnecting, the transport,
the receive lag median, and a details popover with the last transitions.
The kernel sends a message only when something a user could see changed —
a transition, a new retry time, the newest-data time drifting more than
:data:`~rtnb.widgets.status.FRESH_DRIFT` from what the browser extrapolates —
never once per second of age.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import traitlets

from ..client.source import TopicHandle
from ..core.wording import fmt_clock_utc
from .assets import css, esm
from .base import RtnbWidget, clock_of, connection_of
from .budget import DEFAULT_FPS, MessageBudget
from .feed import Feed, Message, Scheduler, Send
from .recorded import recorded_html
from .stats import LAG_INTERVAL, recent_lag_p50
from .status import connection_payload, same_freshness, topic_payload, transition

if TYPE_CHECKING:
    from ..client.source import Source, TopicView

#: Connection transitions kept for the details popover: 8.
HISTORY: Final = 8


def _logged_transitions(conn: Source) -> list[dict[str, Any]]:
    """The connection's last transitions, from its telemetry log."""
    try:
        rows: list[dict[Any, Any]] = conn.log.states.tail(HISTORY).to_dict("records")
    except Exception:  # pandas missing or the log unreadable: start from now
        return []
    out = []
    for row in rows:
        previous = row["previous"]
        out.append(
            {
                "at": float(row["at"].timestamp()),
                "status": str(row["status"]),
                "previous": None if previous is None or previous != previous else str(previous),
                "reason": str(row["reason"]),
                "attempt": int(row["attempt"]),
            }
        )
    return out


class FreshnessFeed(Feed):
    """Freshness of a connection (all its topics) or of one topic (runtime thread)."""

    def __init__(
        self,
        scheduler: Scheduler,
        send: Send,
        *,
        conn: Source,
        topic: TopicHandle | None = None,
        fps: float = DEFAULT_FPS,
        budget: MessageBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(scheduler, send, fps=fps, budget=budget, clock=clock)
        self.conn = conn
        self.topic = topic
        self.wall = wall
        self.history: collections.deque[dict[str, Any]] = collections.deque(
            _logged_transitions(conn), maxlen=HISTORY
        )
        if not self.history:
            self.history.append(transition(conn.state))
        self._remove_state_cb = conn.on_state(self._on_state)
        self._sent: dict[str, Any] | None = None
        self._now: dict[str, Any] | None = None
        self._lag: float | None = None
        self._lag_at = -LAG_INTERVAL
        self._unrecoverable = 0
        self._gap_at: float | None = None
        #: the topic's last view (kept if the topic is released: the pill shows it as it was)
        self._view: TopicView | None = None if topic is None else conn.topic_view(topic.name)

    def _on_state(self, state: Any) -> None:
        self.history.append(transition(state))

    def payload(self, now: float) -> dict[str, Any]:
        wall = self.wall()
        conn = self.conn
        if now - self._lag_at >= LAG_INTERVAL:
            self._lag_at = now
            self._lag = recent_lag_p50(self.conn.log)
        if self.topic is not None:
            self._view = conn.topic_view(self.topic.name) or self._view
            states = [] if self._view is None else [self._view]
        else:
            states = list(conn.topic_views().values())
        unrecoverable = sum(ts.unrecoverable for ts in states)
        if unrecoverable > self._unrecoverable:
            self._gap_at = wall
        self._unrecoverable = unrecoverable
        if self.topic is not None and states:
            out = topic_payload(states[0], conn.state, wall, self._gap_at)
            out["history"] = list(self.history)
            out["lag"] = self._lag
            return out
        return connection_payload(
            conn.state,
            states,
            wall,
            history=self.history,
            lag_p50=self._lag,
            gap_at=self._gap_at,
        )

    def dirty(self, now: float) -> bool:
        self._now = self.payload(now)
        return not same_freshness(self._sent, self._now)

    def snapshot(self, now: float) -> Message:
        fresh = self._now if self._now is not None else self.payload(now)
        self._now = None
        self._sent = fresh
        return {"t": "fresh", "fresh": fresh}, []

    def _teardown(self) -> None:
        self._remove_state_cb()


def connection_key(conn: object) -> str:
    """What tells views of one connection (or replay) from another's, in the browser."""
    return f"{id(conn):x}"


class Freshness(RtnbWidget):
    """A status pill for ``rtnb.connect(...)`` or a topic handle (``conn.subscribe(...)``).

    One pill per connection in a cell: a pill that is part of a larger widget
    (``embedded``, as a :class:`~rtnb.widgets.Dashboard`'s is) hides itself in the
    browser while a standalone connection pill of the same connection is shown
    in the same cell output, so ``VBox([Freshness(conn), Dashboard(conn, ...)])``
    shows one pill, and it shows again when the other is gone.
    """

    _esm = esm("freshness.js")
    _css = css()

    label = traitlets.Unicode("").tag(sync=True)
    scope = traitlets.Unicode("connection").tag(sync=True)
    #: the connection (or replay) this pill shows, as :func:`connection_key` names it
    source_key = traitlets.Unicode("").tag(sync=True)
    #: part of a larger widget: steps aside for a standalone pill of the same connection
    embedded = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        source: Source | TopicHandle | Any,
        *,
        fps: float = DEFAULT_FPS,
        stale_after: float | None = None,
    ) -> None:
        conn = connection_of(source)
        topic = source if isinstance(source, TopicHandle) else None
        super().__init__(
            label=topic.name if topic is not None else conn.url,
            scope="topic" if topic is not None else "connection",
            source_key=connection_key(conn),
        )
        self.source = source
        if stale_after is not None:
            if topic is None:
                raise ValueError(
                    "stale_after applies to one topic: Freshness(conn.subscribe(name), "
                    "stale_after=S), or subscribe with conn.subscribe(name, stale_after=S)"
                )
            self._expect_events(topic, stale_after)

        def make(send: Any) -> Feed:
            return FreshnessFeed(
                conn.loop, send, conn=conn, topic=topic, fps=fps, wall=clock_of(conn)
            )

        self._attach(conn, make)

    def _render_recorded(self) -> str:
        """The newest data's time and the gaps, as of now (never the status word)."""
        conn = self._recorded_from
        if conn is None:
            return ""
        if isinstance(self.source, TopicHandle):
            view = conn.topic_view(self.source.name)
            states = [] if view is None else [view]
        else:
            states = list(conn.topic_views().values())
        lasts = [ts.last_event_at for ts in states if ts.last_event_at is not None]
        newest = f"{fmt_clock_utc(max(lasts))} UTC" if lasts else "no data yet"
        facts = [
            ("newest data", newest),
            ("topics", ", ".join(ts.name for ts in states) or "none"),
            ("gaps", f"{sum(ts.gaps for ts in states):,}"),
            ("events lost", f"{sum(ts.unrecoverable for ts in states):,}"),
        ]
        return recorded_html(self.label, conn.now(), facts=facts)

    def __repr__(self) -> str:
        return f"<Freshness {self.scope} {self.label!r}>"
