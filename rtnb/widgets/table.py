"""``StreamTable``: a live, virtualised table of a topic's entities.

Python side only syncs a few small traits (topic name, initial sort, height,
action labels); rows travel as batched custom messages built by
:class:`~rtnb.widgets.rows.TableFeed` on the runtime thread. The browser
keeps the rows, sorts them, renders only the visible ones and ticks the
freshness age (``static/table.js``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import traitlets

from ..client.source import PENDING_FIELD, TopicHandle
from .assets import css, esm
from .base import RtnbWidget, clock_of
from .budget import DEFAULT_FPS
from .feed import MAX_FPS, Feed, Send
from .recorded import RECORDED_ROWS, recorded_html
from .rows import Action, TableFeed

#: Default height of a table's scrolling body, in CSS pixels: 360.
DEFAULT_HEIGHT: Final = 360
#: Entities whose fields a ``sort_by`` / ``order`` column is checked against: 1,000.
FIELD_SAMPLE: Final = 1_000


def _action(spec: Action | Mapping[str, Any]) -> Action:
    if isinstance(spec, Action):
        return spec
    try:
        return Action(str(spec["label"]), dict(spec["patch"]), dict(spec.get("when") or {}))
    except (KeyError, TypeError) as exc:
        raise TypeError(
            f"an action is rtnb.widgets.Action(label, patch, when=...) or a dict with "
            f"'label' and 'patch' (and optional 'when'); got {spec!r}"
        ) from exc


def _orders(order: Mapping[str, Sequence[Any] | Any] | None) -> dict[str, list[Any]]:
    """``{column: [values in order]}`` from lists or pandas ordered ``CategoricalDtype``s."""
    out: dict[str, list[Any]] = {}
    for column, values in (order or {}).items():
        if hasattr(values, "categories"):  # a pandas CategoricalDtype (or Categorical)
            values = list(values.categories)
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise ValueError(
                f"order[{column!r}] must be a non-empty list of values, lowest first "
                f"(e.g. ['low', 'medium', 'high']), got {values!r}"
            )
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"order[{column!r}] lists a value twice: {list(values)!r}")
        if not all(v is None or isinstance(v, str | int | float) for v in values):
            raise ValueError(f"order[{column!r}] values must be strings or numbers: {values!r}")
        out[str(column)] = list(values)
    return out


def _check_fields(
    topic: TopicHandle,
    named: list[tuple[str, str]],
    shown: set[str] | None = None,
    *,
    stacklevel: int = 4,
) -> None:
    """Warn about each ``(argument, column)`` that is not a field of ``topic``'s entities
    (or not one of the ``shown`` columns): now if it has data, else once, with its first
    event (a misspelling sorts nothing)."""

    def fields() -> set[str] | None:
        with topic.connection.open_rows(topic.name) as rows:
            if not len(rows):
                return None
            seen = {"id"}
            for eid in itertools.islice(rows.ids(), FIELD_SAMPLE):
                seen.update(k for k in rows.row(eid) or () if k != PENDING_FIELD)
            return seen

    def warn(known: set[str], stacklevel: int) -> None:
        for argument, column in named:
            if column not in known:
                where = "a field of this topic's entities" if shown is None else "shown"
                warnings.warn(
                    f"StreamTable({topic.name!r}): {argument} column {column!r} is not {where}; "
                    f"columns: {', '.join(sorted(known))}",
                    stacklevel=stacklevel,
                )

    known = shown if shown is not None else topic.connection.call(fields, what="column check")
    if known is not None:
        warn(known, stacklevel=stacklevel)  # the caller's StreamTable(...) line
        return
    remove: Callable[[], None] | None = None

    def on_first_event(_event: object, _outcome: str) -> None:
        known = fields()  # on the runtime thread, as every event callback
        if known is not None and remove is not None:
            remove()
            warn(known, stacklevel=2)

    remove = topic.on_event(on_first_event)


class StreamTable(RtnbWidget):
    """A live table of ``topic``'s entities, updated at most ``fps`` times a second.

    ``columns``: fields to show (default: every field seen, in order of
    appearance; the entity id always comes first). ``max_rows``: keep only
    the most recently changed rows (default: all). ``sort_by``: initial sort
    column, ``"-price"`` for descending (the user re-sorts in the browser).
    ``actions``: row buttons, e.g. ``[Action("Acknowledge", {"status": "ack"},
    when={"status": "open"})]``; clicks become optimistic ``topic.mutate``
    calls, shown pending until confirmed, or rolled back with the error.
    ``order``: columns whose values have an order of their own, e.g.
    ``{"severity": ["low", "medium", "high", "critical"]}`` (or a pandas ordered
    ``CategoricalDtype``): sorting by that column follows it (``sort_by="-severity"``:
    critical first); values not listed come after the listed ones.

    A ``sort_by`` or ``order`` column that is not a field of the topic's entities
    warns, naming the fields (at once if the topic has data, else with its first event).
    """

    _esm = esm("table.js")
    _css = css()

    topic_name = traitlets.Unicode("").tag(sync=True)
    sort_by = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    height = traitlets.Int(DEFAULT_HEIGHT).tag(sync=True)
    action_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    fps = traitlets.Float(DEFAULT_FPS).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    order = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        topic: TopicHandle,
        columns: Sequence[str] | None = None,
        max_rows: int | None = None,
        fps: float = DEFAULT_FPS,
        sort_by: str | None = None,
        *,
        actions: Sequence[Action | Mapping[str, Any]] = (),
        height: int = DEFAULT_HEIGHT,
        title: str | None = None,
        order: Mapping[str, Sequence[Any] | Any] | None = None,
        stale_after: float | None = None,
    ) -> None:
        if not isinstance(topic, TopicHandle):
            raise TypeError(
                f"StreamTable needs a topic handle (conn.subscribe(...)), got {type(topic).__name__}"
            )
        if columns is not None and (isinstance(columns, str) or not columns):
            raise ValueError(f"columns must be a non-empty list of field names, got {columns!r}")
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
        acts = [_action(a) for a in actions]
        orders = _orders(order)
        super().__init__(
            topic_name=topic.name,
            sort_by=sort_by,
            order=orders,
            height=int(height),
            action_labels=[a.label for a in acts],
            fps=float(fps),
            title=title or topic.name,
        )
        self.topic = topic
        self._columns = None if columns is None else list(columns)
        self._expect_events(topic, stale_after)
        self.actions = tuple(acts)
        self.max_rows = max_rows
        self._attach(topic.connection, table_feed(topic, columns, max_rows, self.actions, fps))
        named = [("sort_by", sort_by.removeprefix("-"))] if sort_by else []
        named += [("order", c) for c in orders]
        if named:
            _check_fields(topic, named, None if columns is None else {"id", *columns})

    def _render_recorded(self) -> str:
        """The rows as of now, capped (runtime thread; see :mod:`rtnb.widgets.recorded`)."""
        return table_recorded(self.topic, self.title, self._columns)

    def _on_message(self, content: dict[str, Any]) -> None:
        if content.get("t") == "act":
            self._act(str(content.get("id")), content.get("action"))

    def _act(self, entity_id: str, index: Any) -> None:
        act(self.topic, self.actions, self._feed, entity_id, index)

    def __repr__(self) -> str:
        return f"<StreamTable {self.topic_name!r} fps={self.fps:g}>"


def table_feed(
    topic: TopicHandle,
    columns: Sequence[str] | None,
    max_rows: int | None,
    actions: tuple[Action, ...],
    fps: float,
) -> Callable[[Send], Feed]:
    """``make(send)``: the feed of a table of ``topic`` (a StreamTable's, or a Dashboard's part)."""
    conn = topic.connection
    wall = clock_of(conn)

    def make(send: Send) -> Feed:
        rows = conn.open_rows(topic.name)
        try:
            return TableFeed(
                conn.loop,
                send,
                rows=rows,
                connection_state=lambda: conn.state,
                resolutions=conn.open_resolutions().take,
                columns=columns,
                max_rows=max_rows,
                actions=actions,
                fps=fps,
                wall=wall,
            )
        except BaseException:
            rows.close()  # a cursor left open would collect changed ids forever
            raise

    return make


def act(
    topic: TopicHandle, actions: tuple[Action, ...], feed: Feed | None, entity_id: str, index: Any
) -> None:
    """A row button was pressed: mutate optimistically if the action still applies."""
    if not isinstance(index, int) or not 0 <= index < len(actions):
        return
    action = actions[index]
    view = topic.get(entity_id)
    if view is None or not action.applies(view):
        if feed is not None:
            what = "no longer exists" if view is None else "has changed"
            feed.notice(
                {"id": entity_id, "text": f"{action.label}: {entity_id} {what}; nothing was sent"}
            )
        return
    topic.mutate(entity_id, dict(action.patch))


def table_recorded(topic: TopicHandle, title: str, columns: Sequence[str] | None) -> str:
    """A table of ``topic``'s rows as of now, capped, as recorded HTML (runtime thread; see
    :mod:`rtnb.widgets.recorded`): a StreamTable's twin, or a Dashboard table's."""
    with topic.connection.open_rows(topic.name) as cursor:
        ids = list(itertools.islice(cursor.ids(), RECORDED_ROWS))
        rows = [(eid, cursor.row(eid) or {}) for eid in ids]
        total = len(cursor)
    shown = None if columns is None else list(columns)
    if shown is None:
        seen: dict[str, None] = {}
        for _, row in rows:
            seen.update(dict.fromkeys(k for k in row if k != PENDING_FIELD))
        shown = list(seen)
    return recorded_html(title, topic.connection.now(), columns=shown, rows=rows, total=total)
