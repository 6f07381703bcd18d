"""``Dashboard``: freshness, live counters and one table per topic, in one layout.

The dashboard is an ``ipywidgets.VBox`` of ordinary rtnb widgets, so each
part keeps its own message budget and the layout follows JupyterLab's. Row
actions (e.g. "Acknowledge" on an open incident) are offered when the
connection's role may mutate (operator or admin); the server enforces roles
regardless — a refused change shows its error and rolls back like any other.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import ipywidgets  # type: ignore[import-untyped]
import traitlets

from ..core.freshness import check_stale_after
from .assets import css, esm
from .base import RtnbWidget, clock_of, connection_of, is_live
from .budget import MessageBudget
from .feed import Feed, Message, Scheduler, Send
from .freshness import Freshness
from .recorded import recorded_html
from .rows import Action
from .stats import RateMeter, degraded_now, degraded_seconds
from .table import DEFAULT_HEIGHT, StreamTable

if TYPE_CHECKING:
    from ..client.source import Source
    from ..client.topic import Topic

__all__ = ["DEFAULT_ACTIONS", "DEFAULT_SORT", "Counters", "Dashboard", "connection_role"]

#: Messages per second the counters strip sends at most: 1.
COUNTERS_FPS: Final = 1
#: Row actions the dashboard offers per topic when the role may mutate.
DEFAULT_ACTIONS: Final[Mapping[str, tuple[Action, ...]]] = {
    "incidents": (
        Action("Acknowledge", {"status": "ack"}, when={"status": "open"}),
        Action("Resolve", {"status": "resolved"}, when={"status": "ack"}),
    ),
}
#: Initial sort of a topic's table in a dashboard: incidents newest first (the open
#: ones, where the actions are, are the recent ones; the user re-sorts in the browser).
DEFAULT_SORT: Final[Mapping[str, str]] = {"incidents": "-openedAt"}
_MUTATING_ROLES: Final = frozenset({"operator", "admin"})
#: Seconds a dashboard waits for the server to confirm the role before drawing
#: its tables (with controls when it does not know): 5.
ROLE_WAIT: Final = 5.0


def connection_role(conn: Source, wait: float = ROLE_WAIT) -> str | None:
    """The role the server confirmed for ``conn`` (for showing controls only).

    From the server's ``authenticated`` frame (``conn.identity``), waiting up to
    ``wait`` s for a live connection still connecting; None if unknown (a replay,
    or no answer in time). The token is never read here; the server decides what
    is allowed.
    """
    from ..client.connection import Connection

    identity = conn.wait_identity(wait) if isinstance(conn, Connection) else conn.identity
    return None if identity is None else identity.role


def warn_unknown_topics(conn: Source, handles: Sequence[Topic], wait: float = ROLE_WAIT) -> None:
    """Warn about each of ``handles`` the server refused (a misspelled name), with its reason.

    Waits up to ``wait`` s for the server's answer, only while the connection is subscribed
    (a connection still connecting or reconnecting answers later: no wait, no warning).
    """
    if not handles or not is_live(conn):
        return
    deadline = time.monotonic() + wait
    while (
        conn.state.status.value in ("authenticated", "subscribed") and time.monotonic() < deadline
    ):
        if all(h.topic_state.status != "pending" for h in handles):
            break
        time.sleep(0.02)
    for h in handles:
        st = h.topic_state
        if st.status in ("unknown", "forbidden", "refused") and st.error:
            warnings.warn(f"Dashboard: {st.error}", stacklevel=3)


class CountersFeed(Feed):
    """Events/s, duplicates, gaps and degraded seconds of a connection, once a second."""

    def __init__(
        self,
        scheduler: Scheduler,
        send: Send,
        *,
        conn: Source,
        budget: MessageBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(scheduler, send, fps=COUNTERS_FPS, budget=budget, clock=clock)
        self.conn = conn
        self.wall = wall
        self.meter = RateMeter()
        self._sent: dict[str, Any] | None = None
        self._now: dict[str, Any] | None = None

    def figures(self, now: float) -> dict[str, Any]:
        log = self.conn.log
        counts = log.counts
        topics = list(self.conn.topic_states.values())
        state = self.conn.state
        return {
            "eps": round(self.meter.update(counts, now), 1),
            "duplicates": int(counts.get("duplicate", 0)),
            "invalid": int(counts.get("invalid", 0)),
            "gaps": sum(ts.gaps for ts in topics),
            "unrecoverable": sum(ts.unrecoverable for ts in topics),
            "degraded": round(degraded_seconds(log, state, self.wall()), 1),
            "degradedNow": degraded_now(log),
        }

    def dirty(self, now: float) -> bool:
        self._now = self.figures(now)
        return self._now != self._sent

    def snapshot(self, now: float) -> Message:
        figures = self._now or self.figures(now)
        self._now = None
        self._sent = figures
        return {"t": "counters", "counters": figures}, []


class Counters(RtnbWidget):
    """Small live counters for a connection: events/s, duplicates, gaps, degraded seconds."""

    _esm = esm("counters.js")
    _css = css()

    label = traitlets.Unicode("").tag(sync=True)

    def __init__(self, conn: Source | Any) -> None:
        conn = connection_of(conn)
        super().__init__(label=conn.url)

        def make(send: Any) -> Feed:
            return CountersFeed(conn.loop, send, conn=conn, wall=clock_of(conn))

        self._attach(conn, make)

    def _render_recorded(self) -> str:
        conn = self._recorded_from
        if conn is None:
            return ""
        counts = conn.log.counts
        topics = list(conn.topic_states.values())
        facts = [
            ("duplicates", f"{int(counts.get('duplicate', 0)):,}"),
            ("gaps", f"{sum(ts.gaps for ts in topics):,}"),
            ("degraded s", f"{degraded_seconds(conn.log, conn.state, conn.now()):.1f}"),
        ]
        return recorded_html(f"{conn.url} counters", conn.now(), facts=facts)


class Dashboard(ipywidgets.VBox):  # type: ignore[misc]
    """Freshness + live counters + one :class:`StreamTable` per topic.

    Its freshness pill is ``embedded``: displayed beside a ``Freshness(conn)`` of the
    same connection in one cell output, only that one shows (one pill per connection).

    ``topics``: names (subscribed here, ``ordering="sequence"``, released on
    :meth:`close`) or topic handles. ``stale_after``: seconds without an event
    after which a topic reads ``quiet`` (None: never). ``actions``: per-topic row actions
    (default :data:`DEFAULT_ACTIONS`, shown only when the role may mutate;
    pass ``{}`` for none).
    """

    def __init__(
        self,
        conn: Source,
        topics: Sequence[str | Topic],
        *,
        actions: Mapping[str, Sequence[Action | Mapping[str, Any]]] | None = None,
        fps: float = 10,
        height: int = DEFAULT_HEIGHT,
        stale_after: float | None = None,
    ) -> None:
        check_stale_after(stale_after)
        if isinstance(topics, str):
            topics = [topics]
        conn = connection_of(conn)
        self.conn = conn
        self._owned: list[Topic] = []
        handles: list[Topic] = []
        try:
            for t in topics:
                if isinstance(t, str):
                    # ConnectionClosed on a closed connection
                    handle = conn.subscribe(t, stale_after=stale_after)
                    self._owned.append(handle)
                    handles.append(handle)
                else:
                    if stale_after is not None:  # a handle of our own carries the setting
                        self._owned.append(conn.subscribe(t.name, stale_after=stale_after))
                    handles.append(t)
        except BaseException:
            self.close()  # releases what it subscribed; the error says it all
            raise
        warn_unknown_topics(conn, self._owned)
        self.role = connection_role(conn) if is_live(conn) else None
        if actions is None:
            may_mutate = is_live(conn) and (self.role is None or self.role in _MUTATING_ROLES)
            actions = DEFAULT_ACTIONS if may_mutate else {}
        self.freshness = Freshness(conn)
        # one pill per connection in a cell: this one steps aside for a standalone one
        self.freshness.embedded = True
        self.counters = Counters(conn)
        self.tables = [
            StreamTable(
                h,
                fps=fps,
                height=height,
                actions=actions.get(h.name, ()),
                sort_by=DEFAULT_SORT.get(h.name),
            )
            for h in handles
        ]
        header = ipywidgets.HBox(
            [self.freshness, self.counters],
            layout=ipywidgets.Layout(align_items="center", flex_flow="row wrap", grid_gap="8px"),
        )
        super().__init__(
            [header, *self.tables],
            layout=ipywidgets.Layout(grid_gap="12px", width="100%"),
        )
        self.add_class("rtnb-dashboard")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        for w in (self.counters, *self.tables):  # the recorded twins of what it holds
            w._show_recorded()
        return super()._repr_mimebundle_(**kwargs)

    def close(self) -> None:
        # also called by ipywidgets' __del__ when __init__ failed half-way (a closed connection)
        parts = [getattr(self, "freshness", None), getattr(self, "counters", None)]
        for w in (*parts, *getattr(self, "tables", ())):
            if w is not None:
                w.close()
        owned, self._owned = getattr(self, "_owned", []), []
        for handle in owned:
            try:
                handle.unsubscribe()
            except Exception:  # the runtime is gone (interpreter exit): nothing to release
                break
        super().close()

    def __repr__(self) -> str:
        return f"<Dashboard {[t.topic_name for t in self.tables]}>"
