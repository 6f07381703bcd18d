"""What widgets read of a topic: an immutable :class:`TopicView` and a :class:`RowCursor`.

The pipeline's :class:`~rtnb.core.pipeline.TopicState` (its orderer, store and
counters, mutated by every frame) stays the client's. Through
:class:`rtnb.Source` a widget gets, instead:

* :class:`TopicView`, the topic's facts at one instant -- status, the inputs of
  its freshness (``last_event_at``, ``stale_after``), counts, events still to
  replay, the server's refusal -- made here, on the runtime thread, so no
  widget computes them from the pipeline's parts (``Source.topic_view(name)``,
  ``Source.topic_views()``);
* :class:`RowCursor`, a table's reading of the rows: the entities with their
  pending optimistic patches, and the ids changed since its last look
  (``Source.open_rows(name)``; runtime thread, closed when done).

:data:`PENDING_FIELD` is the field a row carries, ``True``, while an optimistic
mutation on it is unconfirmed (the column ``topic.df`` shows as ``_pending``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.errors import LocalProtocolError

if TYPE_CHECKING:
    from ..core.pipeline import TopicState
    from .topic import Topic


@dataclass(frozen=True, slots=True)
class TopicView:
    """One topic at one instant, as widgets read it (made on the runtime thread).

    ``status`` is the pipeline's: ``pending``, ``live``, ``replaying``, ``stale``
    (frozen: ``over_limit`` says why), ``forbidden``, ``unknown`` or ``refused``.
    What a user sees also depends on the connection and the clock:
    :func:`rtnb.core.freshness.freshness` of the connection's state, ``status``,
    ``last_event_at`` and ``stale_after`` (``quiet``, ``closed``, …).
    """

    name: str
    status: str
    #: unix seconds of the newest applied event (None: none yet)
    last_event_at: float | None
    #: seconds without an event after which the live topic reads ``quiet`` (None: never)
    stale_after: float | None
    #: entities held (server state)
    entities: int
    #: events applied
    applied: int
    gaps: int
    #: events the server could no longer replay
    unrecoverable: int
    #: events still to replay before the topic is live again (None: unknown or none)
    missing: int | None
    #: the server's words when it refused the topic, ``message (code)``; else None
    refusal: str | None
    #: the server's message alone (``refusal`` without the code)
    error: str | None
    #: why the client froze the topic (its state passed ``Limits.max_topic_bytes``), else None
    over_limit: str | None


def refusal_reason(st: TopicState) -> str | None:
    """The server's words for a refused topic: ``message (code)``."""
    if st.error is None and st.error_code is None:
        return None
    code = f" ({st.error_code})" if st.error_code else ""
    return f"{st.error or 'refused'}{code}"


def replay_missing(st: TopicState) -> int | None:
    """Events still to replay before the topic is live again (None: unknown or none)."""
    if st.replay_until is None:
        return None
    pos = st.orderer.position()
    return None if pos is None else max(0, st.replay_until - pos)


def topic_view(st: TopicState) -> TopicView:
    """``st`` as a :class:`TopicView` now (runtime thread)."""
    return TopicView(
        name=st.name,
        status=st.status,
        last_event_at=st.last_event_at,
        stale_after=st.stale_after,
        entities=len(st.store.entities),
        applied=st.applied,
        gaps=st.gaps,
        unrecoverable=st.unrecoverable,
        missing=replay_missing(st),
        refusal=refusal_reason(st),
        error=st.error,
        over_limit=st.over_limit,
    )


class RowCursor:
    """A topic's rows, and the ids changed since the last :meth:`take` (runtime thread).

    Opened by ``Source.open_rows(name)``; :meth:`close` it when done (a ``with``
    block does): while open it collects the id of every entity an event touches.
    Rows are the entities' fields with pending optimistic patches applied, and
    :data:`PENDING_FIELD` set while one is unconfirmed.
    """

    __slots__ = ("_changes", "_state", "_store", "name", "row")

    def __init__(self, state: TopicState) -> None:
        self.name = state.name
        self._state = state
        self._store = store = state.store
        self._changes = store.open_changes()
        #: ``row(entity_id)``: one entity's row, or None if it does not exist
        self.row = store.view

    def reader(self) -> Callable[[str], dict[str, Any] | None]:
        """:attr:`row` for a batch of reads now: while no optimistic patch is pending,
        the store's own lookup (the same rows, without a call per row)."""
        store = self._store
        return store.view if store.pending else store.entities.get

    def view(self) -> TopicView:
        """The topic's :class:`TopicView` now."""
        return topic_view(self._state)

    @property
    def changed(self) -> bool:
        """True if :meth:`take` has something to say."""
        cs = self._changes
        return cs.reset or bool(cs.changed)

    def take(self) -> tuple[bool, Collection[str]]:
        """``(reset, ids)``: the ids changed since the last take (deleted ones included:
        their :attr:`row` is None). ``reset``: the whole state was replaced (a snapshot),
        read every row again (:meth:`rows`); the first take of a cursor is one."""
        return self._changes.take()

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every row, by entity id (a new dict; the rows are shared: do not change them)."""
        return self._store.views()

    def ids(self) -> Iterator[str]:
        """The entity ids, oldest first."""
        return iter(self._store.entities)

    def __len__(self) -> int:
        return len(self._store.entities)

    def close(self) -> None:
        """Stop collecting changes (idempotent)."""
        self._store.close_changes(self._changes)

    def __enter__(self) -> RowCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RowCursor {self.name!r} rows={len(self)}>"


class _HasTopics(Protocol):
    @property
    def topic_states(self) -> Mapping[str, TopicState]: ...

    @property
    def topics(self) -> Mapping[str, Topic]: ...

    def call(self, fn: Callable[[], Any], *, what: str) -> Any: ...


class TopicReads:
    """``topic_view``, ``topic_views`` and ``open_rows`` of an :class:`rtnb.Source`, made on
    the runtime thread (Connection and Replay): one topic's from the state its handles
    read (``topics``), all topics' from the pipeline's ``topic_states``."""

    __slots__ = ()

    def topic_view(self: _HasTopics, name: str) -> TopicView | None:
        """Topic ``name``'s facts now (any thread); None if it is not subscribed."""

        def read() -> TopicView | None:
            handle = self.topics.get(name)
            return None if handle is None else topic_view(handle.topic_state)

        view: TopicView | None = self.call(read, what=f"reading topic {name!r}")
        return view

    def topic_views(self: _HasTopics) -> dict[str, TopicView]:
        """Every subscribed topic's :class:`TopicView` now, by name (any thread)."""

        def read() -> dict[str, TopicView]:
            return {name: topic_view(st) for name, st in self.topic_states.items()}

        views: dict[str, TopicView] = self.call(read, what="reading topics")
        return views

    def open_rows(self: _HasTopics, name: str) -> RowCursor:
        """A cursor over subscribed topic ``name``'s rows (runtime thread; close it)."""
        handles = self.topics
        handle = handles.get(name)
        if handle is None:
            held = ", ".join(sorted(handles)) or "none"
            raise LocalProtocolError(
                f"topic {name!r} is not subscribed here (subscribed: {held}); subscribe to it first"
            )
        return RowCursor(handle.topic_state)
