"""``StreamTable``: a live, virtualised table of a topic's entities.

Python side only syncs a few small traits (topic name, initial sort, height,
action labels); rows travel as batched custom messages built by
:class:`~rtnb.widgets.rows.TableFeed` on the runtime thread. The browser
keeps the rows, sorts them, renders only the visible ones and ticks the
freshness age (``static/table.js``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import traitlets

from .assets import css, esm
from .base import RtnbWidget, clock_of
from .budget import DEFAULT_FPS
from .feed import MAX_FPS, Feed, Send
from .rows import Action, TableFeed

if TYPE_CHECKING:
    from ..client.topic import Topic

__all__ = ["Action", "StreamTable", "act", "table_feed"]

#: Default height of a table's scrolling body, in CSS pixels: 360.
DEFAULT_HEIGHT: Final = 360


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


class StreamTable(RtnbWidget):
    """A live table of ``topic``'s entities, updated at most ``fps`` times a second.

    ``columns``: fields to show (default: every field seen, in order of
    appearance; the entity id always comes first). ``max_rows``: keep only
    the most recently changed rows (default: all). ``sort_by``: initial sort
    column, ``"-price"`` for descending (the user re-sorts in the browser).
    ``actions``: row buttons, e.g. ``[Action("Acknowledge", {"status": "ack"},
    when={"status": "open"})]``; clicks become optimistic ``topic.mutate``
    calls, shown pending until confirmed, or rolled back with the error.
    """

    _esm = esm("table.js")
    _css = css()

    topic_name = traitlets.Unicode("").tag(sync=True)
    sort_by = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    height = traitlets.Int(DEFAULT_HEIGHT).tag(sync=True)
    action_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    fps = traitlets.Float(DEFAULT_FPS).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        topic: Topic,
        columns: Sequence[str] | None = None,
        max_rows: int | None = None,
        fps: float = DEFAULT_FPS,
        sort_by: str | None = None,
        *,
        actions: Sequence[Action | Mapping[str, Any]] = (),
        height: int = DEFAULT_HEIGHT,
        title: str | None = None,
    ) -> None:
        from ..client.topic import Topic

        if not isinstance(topic, Topic):
            raise TypeError(
                f"StreamTable needs a topic handle (conn.subscribe(...)), got {type(topic).__name__}"
            )
        if columns is not None and (isinstance(columns, str) or not columns):
            raise ValueError(f"columns must be a non-empty list of field names, got {columns!r}")
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps!r}")
        acts = [_action(a) for a in actions]
        super().__init__(
            topic_name=topic.name,
            sort_by=sort_by,
            height=int(height),
            action_labels=[a.label for a in acts],
            fps=float(fps),
            title=title or topic.name,
        )
        self.topic = topic
        self.actions = tuple(acts)
        self.max_rows = max_rows
        self._attach(topic.connection, table_feed(topic, columns, max_rows, self.actions, fps))

    def _on_message(self, content: dict[str, Any]) -> None:
        if content.get("t") == "act":
            self._act(str(content.get("id")), content.get("action"))

    def _act(self, entity_id: str, index: Any) -> None:
        act(self.topic, self.actions, self._feed, entity_id, index)

    def __repr__(self) -> str:
        return f"<StreamTable {self.topic_name!r} fps={self.fps:g}>"


def table_feed(
    topic: Topic,
    columns: Sequence[str] | None,
    max_rows: int | None,
    actions: tuple[Action, ...],
    fps: float,
) -> Callable[[Send], Feed]:
    """``make(send)``: the feed of a table of ``topic`` (a StreamTable's, or a Dashboard's part)."""
    conn = topic.connection
    wall = clock_of(conn)

    def make(send: Send) -> Feed:
        return TableFeed(
            conn.loop,
            send,
            state=topic.topic_state,
            connection_state=lambda: conn.state,
            resolutions=conn.open_resolutions().take,
            columns=columns,
            max_rows=max_rows,
            actions=actions,
            fps=fps,
            wall=wall,
        )

    return make


def act(
    topic: Topic, actions: tuple[Action, ...], feed: Feed | None, entity_id: str, index: Any
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
