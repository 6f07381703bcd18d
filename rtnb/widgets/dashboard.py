"""``Dashboard``: freshness, live counters and one table per topic, in one layout.

The dashboard is *one* anywidget (so it works wherever a StreamTable does:
JupyterLab, Notebook 7, Voilà, marimo, Panel). It draws its parts itself with
the same front-end code as the standalone widgets (``static/dashboard.js``
gives each part a model of its own: the part's traits, and the custom
messages tagged with its id), and each part keeps its own feed and message
rate on the kernel side. Row
actions (e.g. "Acknowledge" on an open incident) are offered when the
connection's role may mutate (operator or admin); the server enforces roles
regardless — a refused change shows its error and rolls back like any other.
"""

from __future__ import annotations

import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import traitlets

from ..core.freshness import check_stale_after
from .assets import css, esm
from .base import RtnbWidget, clock_of, connection_of, is_live, logger
from .budget import MessageBudget
from .feed import Feed, Message, Scheduler, Send
from .freshness import FreshnessFeed, connection_key
from .recorded import recorded_html
from .rows import Action
from .stats import RateMeter, degraded_now, degraded_seconds
from .table import DEFAULT_HEIGHT, _action, _check_fields, act, table_feed, table_recorded

if TYPE_CHECKING:
    from ..client.source import Source, TopicHandle

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
    identity = conn.wait_identity(wait) if conn.live else conn.identity
    return None if identity is None else identity.role


def warn_unknown_topics(
    conn: Source, handles: Sequence[TopicHandle], wait: float = ROLE_WAIT, *, stacklevel: int = 3
) -> None:
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
        views = conn.topic_views()
        if all(h.name not in views or views[h.name].status != "pending" for h in handles):
            break
        time.sleep(0.02)
    views = conn.topic_views()
    for h in handles:
        st = views.get(h.name)
        if st is not None and st.status in ("unknown", "forbidden", "refused") and st.error:
            warnings.warn(f"Dashboard: {st.error}", stacklevel=stacklevel)


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
        topics = list(self.conn.topic_views().values())
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
        return "" if conn is None else counters_recorded(conn)


def counters_recorded(conn: Source) -> str:
    """``conn``'s counters as of now, as recorded HTML (runtime thread): the twin of a
    :class:`Counters`, or of a Dashboard's counters."""
    counts = conn.log.counts
    topics = list(conn.topic_views().values())
    facts = [
        ("duplicates", f"{int(counts.get('duplicate', 0)):,}"),
        ("gaps", f"{sum(ts.gaps for ts in topics):,}"),
        ("degraded s", f"{degraded_seconds(conn.log, conn.state, conn.now()):.1f}"),
    ]
    return recorded_html(f"{conn.url} counters", conn.now(), facts=facts)


@dataclass(eq=False)
class DashboardPart:
    """One part of a :class:`Dashboard`: its kind (``"freshness"``, ``"counters"``,
    ``"table"``), the traits its front end reads, and its feed."""

    id: str
    kind: str
    traits: dict[str, Any]
    feed: Feed | None = field(default=None, repr=False)
    _owner: weakref.ref[Dashboard] | None = field(default=None, repr=False)

    def send(self, content: dict[str, Any], buffers: Sequence[bytes]) -> None:
        """The feed's ``send`` (runtime thread): the dashboard's, tagged with this part.

        The feed holds it weakly (a bound method), and this part holds the dashboard
        weakly: a collected dashboard stops its feeds, as a standalone widget's do."""
        owner = None if self._owner is None else self._owner()
        if owner is not None:
            owner.send({**content, "part": self.id}, list(buffers))

    def __getattr__(self, name: str) -> Any:  # e.g. ``part.embedded``, ``part.source_key``
        traits = self.__dict__.get("traits", {})
        if name in traits:
            return traits[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")


@dataclass(eq=False)
class DashboardTable(DashboardPart):
    """A table of a dashboard: a :class:`StreamTable` drawn inside it."""

    topic: TopicHandle | None = field(default=None, repr=False)
    actions: tuple[Action, ...] = ()


class Dashboard(RtnbWidget):
    """Freshness + live counters + one live table per topic, as one widget.

    Its freshness pill is ``embedded``: displayed beside a ``Freshness(conn)`` of the
    same connection in one cell output, only that one shows (one pill per connection).

    ``topics``: names (subscribed here, ``ordering="sequence"``, released on
    :meth:`close`) or topic handles. ``stale_after``: seconds without an event
    after which a topic reads ``quiet`` (None: never). ``actions``: per-topic row actions
    (default :data:`DEFAULT_ACTIONS`, shown only when the role may mutate;
    pass ``{}`` for none).
    """

    _esm = esm("dashboard.js")
    _css = css()

    #: the parts, in order: ``{"id", "kind", "traits"}`` each
    parts = traitlets.List(traitlets.Dict()).tag(sync=True)

    def __init__(
        self,
        conn: Source,
        topics: Sequence[str | TopicHandle],
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
        self._owned: list[TopicHandle] = []
        try:
            self._build(conn, topics, actions, fps, height, stale_after)
        except BaseException:
            self.close()  # releases what it subscribed and started; the error says it all
            raise

    def _build(
        self,
        conn: Source,
        topics: Sequence[str | TopicHandle],
        actions: Mapping[str, Sequence[Action | Mapping[str, Any]]] | None,
        fps: float,
        height: int,
        stale_after: float | None,
    ) -> None:
        handles: list[TopicHandle] = []
        for t in topics:
            if isinstance(t, str):
                # ConnectionClosed on a closed connection
                handle: TopicHandle = conn.subscribe(t, stale_after=stale_after)
                self._owned.append(handle)
                handles.append(handle)
            else:
                if stale_after is not None:  # a handle of our own carries the setting
                    self._owned.append(conn.subscribe(t.name, stale_after=stale_after))
                handles.append(t)
        warn_unknown_topics(conn, self._owned, stacklevel=4)
        self.role = connection_role(conn) if is_live(conn) else None
        if actions is None:
            may_mutate = is_live(conn) and (self.role is None or self.role in _MUTATING_ROLES)
            actions = DEFAULT_ACTIONS if may_mutate else {}
        # one pill per connection in a cell: this one steps aside for a standalone one
        self.freshness = DashboardPart(
            "fresh",
            "freshness",
            {
                "label": conn.url,
                "scope": "connection",
                "source_key": connection_key(conn),
                "embedded": True,
            },
        )
        self.counters = DashboardPart("counters", "counters", {"label": conn.url})
        self.tables: list[DashboardTable] = []
        for i, h in enumerate(handles):
            acts = tuple(_action(a) for a in actions.get(h.name, ()))
            # the traits a StreamTable's front end reads (see StreamTable's synced traits)
            traits: dict[str, Any] = {
                "topic_name": h.name,
                "sort_by": DEFAULT_SORT.get(h.name),
                "order": {},
                "height": int(height),
                "action_labels": [a.label for a in acts],
                "fps": float(fps),
                "title": h.name,
            }
            self.tables.append(DashboardTable(f"t{i}", "table", traits, topic=h, actions=acts))
        every: list[DashboardPart] = [self.freshness, self.counters, *self.tables]
        super().__init__(parts=[{"id": p.id, "kind": p.kind, "traits": p.traits} for p in every])
        self._parts = {p.id: p for p in every}
        self._recorded_from = conn  # the parts' recorded twins read it
        wall = clock_of(conn)
        makers: dict[str, Callable[[Send], Feed]] = {
            "fresh": lambda send: FreshnessFeed(conn.loop, send, conn=conn, wall=wall),
            "counters": lambda send: CountersFeed(conn.loop, send, conn=conn, wall=wall),
        }
        for table, handle in zip(self.tables, handles, strict=True):
            makers[table.id] = table_feed(handle, None, None, table.actions, fps)
        for part in every:
            part._owner = weakref.ref(self)
            part.feed = self._start_feed(conn, makers[part.id], part)
        for table in self.tables:  # a default sort column the topic lacks warns, as a StreamTable's
            sort_by = table.traits["sort_by"]
            if sort_by and table.topic is not None:
                named = [("sort_by", sort_by.removeprefix("-"))]
                _check_fields(table.topic, named, None, stacklevel=5)

    @staticmethod
    def _start_feed(conn: Source, make: Callable[[Send], Feed], part: DashboardPart) -> Feed:
        """The part's feed, created on the runtime thread (it opens store cursors there)."""
        feed: Feed = conn.call(lambda: make(part.send), what="creating a widget feed")
        feed.start()
        return feed

    @property
    def messages_sent(self) -> int:
        """Custom messages this widget has sent so far (every part's)."""
        return sum(p.feed.sent for p in self._parts.values() if p.feed is not None)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        for part in self._parts.values():
            if part.feed is not None:
                part.feed.activate()
        for part in (self.counters, *self.tables):  # the recorded twins of what it holds
            self._show_twin(part.id, part.feed, _twin_of(part.id))
        return super()._repr_mimebundle_(**kwargs)

    def _render_part(self, part_id: str) -> str:
        """What part ``part_id`` shows now, as recorded HTML (runtime thread); "": nothing."""
        part = self._parts.get(part_id)
        if part is None:
            return ""
        if isinstance(part, DashboardTable):
            return "" if part.topic is None else table_recorded(part.topic, part.title, None)
        if part.kind == "counters":
            return counters_recorded(self.conn)
        return ""

    def _dispatch(self, widget: Any, content: Any, buffers: Sequence[bytes]) -> None:
        if not isinstance(content, dict):
            return
        part = self._parts.get(str(content.get("part")))
        if part is None or part.feed is None:
            return
        kind = content.get("t")
        if kind == "hello":
            part.feed.request_snapshot()
        elif kind == "ping":  # a browser tab woke up: is the kernel there?
            part.feed.ping()
        elif kind == "act" and isinstance(part, DashboardTable) and part.topic is not None:
            try:
                act(
                    part.topic,
                    part.actions,
                    part.feed,
                    str(content.get("id")),
                    content.get("action"),
                )
            except Exception:
                logger.exception("rtnb dashboard: a row action failed")

    def close(self) -> None:
        # also called when __init__ failed half-way (a closed connection), and by __del__
        for part in getattr(self, "_parts", {}).values():
            if part.feed is not None:
                part.feed.close()
        owned, self._owned = getattr(self, "_owned", []), []
        for handle in owned:
            try:
                handle.unsubscribe()
            except Exception:  # the runtime is gone (interpreter exit): nothing to release
                break
        super().close()

    def __repr__(self) -> str:
        return f"<Dashboard {[t.topic_name for t in getattr(self, 'tables', ())]}>"


def _twin_of(part_id: str) -> Callable[[RtnbWidget], str]:
    """``render(dashboard)`` of one part's recorded twin (holds no dashboard itself)."""

    def render(widget: RtnbWidget) -> str:
        return widget._render_part(part_id) if isinstance(widget, Dashboard) else ""

    return render
