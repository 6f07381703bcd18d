"""``Topic``: one subscribed topic as the user sees it.

Reads (``entities``, ``get``, ``df``, ``freshness``) hop onto the runtime thread
so they see a consistent state even while events are being applied; from
inside a callback (already on the runtime thread) they read directly.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..core.freshness import activity_text, freshness
from ..core.pipeline import TopicState
from ..core.store import PENDING_FIELD
from ..protocol.frames import Event
from .mutation import Mutation

if TYPE_CHECKING:
    import pandas as pd

    from .connection import Connection
    from .replay import Replay
    from .session import ConnectionState

__all__ = ["DF_MAX_COLUMNS", "OVERFLOW_COLUMN", "Topic", "TopicFreshness", "topic_freshness"]

#: Columns ``topic.df`` builds at most: 1,000 (pandas takes ~9 s for a frame of
#: 200,000 columns, which one hostile entity can have). Fields past it, in order of
#: first appearance, go into :data:`OVERFLOW_COLUMN` (a dict per row), and
#: ``df.attrs["overflow_fields"]`` says how many.
DF_MAX_COLUMNS: Final = 1_000
#: The column holding a row's fields past the column cap.
OVERFLOW_COLUMN: Final = "_overflow"

EventCallback = Callable[[Event, str], Any]


@dataclass(frozen=True, slots=True)
class TopicFreshness:
    """How fresh a topic's data is, for humans and widgets.

    ``status`` is ``live`` (subscribed, caught up), ``replaying`` (catching up
    after a reconnect or refreshing from a snapshot), ``stale`` (the
    connection is not subscribed: data as of ``last_event_at``), ``pending``
    (no data and not yet confirmed), ``forbidden`` (the server refused this
    topic for this role), ``unknown`` (no such topic on the server) or
    ``closed`` (the connection is closed). ``activity`` is what the connection
    is doing (``live``, ``connecting``, ``reconnecting``, ``degraded``,
    ``idle``, ``closed``). Both come from :func:`rtnb.core.freshness.freshness`,
    as the widgets' do, so no two views of one connection disagree.
    """

    topic: str
    status: str
    last_event_at: dt.datetime | None
    age_s: float | None
    connection: str
    attempt: int
    next_retry_at: dt.datetime | None
    gaps: int
    unrecoverable: int
    entities: int
    activity: str = "live"
    #: why the topic is not live when the client decided it (its state passed
    #: ``Limits.max_topic_bytes``), else None
    reason: str | None = None

    def __str__(self) -> str:
        age = "no data yet" if self.age_s is None else f"updated {self.age_s:.1f} s ago"
        retry_in = None
        if self.next_retry_at is not None and self.activity == "reconnecting":
            retry_in = self.next_retry_at.timestamp() - time.time()
        detail = activity_text(self.activity, self.attempt, retry_in)
        if self.status == "stale":
            when = self.last_event_at.strftime("%H:%M:%S") if self.last_event_at else "never"
            if self.reason:
                return f"Stale — data as of {when}: {self.reason}"
            return f"Stale — data as of {when}, {detail}"
        if self.status == "pending":
            return f"Pending — {detail or 'waiting for the server'} · {age}"
        if self.status == "closed":
            return f"Closed — {detail}"
        if self.status == "forbidden":
            return f"Forbidden — the server refused topic {self.topic!r}"
        if self.status == "unknown":
            return f"Unknown topic {self.topic!r} — nothing has been published to it"
        if self.status == "replaying":
            return f"Replaying missed events · {age}"
        return f"{self.status.capitalize()} · {age}"


def topic_freshness(st: TopicState, conn: ConnectionState, now: float) -> TopicFreshness:
    """``st``'s freshness under ``conn`` at ``now`` (Topic and ReplayTopic)."""
    retry_at = conn.next_retry_at
    last = st.last_event_at
    f = freshness(conn.status, conn.attempt, retry_at, st.status, last, now)
    return TopicFreshness(
        topic=st.name,
        status=f.status,
        last_event_at=_utc(last),
        age_s=f.age_s,
        connection=conn.status.value,
        attempt=conn.attempt,
        next_retry_at=_utc(retry_at),
        gaps=st.gaps,
        unrecoverable=st.unrecoverable,
        entities=len(st.store.entities),
        activity=f.activity,
        reason=st.over_limit,
    )


def _check_patch(patch: object) -> None:
    if not isinstance(patch, dict) or not patch:
        raise ValueError(f"patch must be a non-empty dict, got {patch!r}")


def _utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


class Topic:
    """A live topic: current entities, a DataFrame view, freshness, mutations."""

    def __init__(self, connection: Connection | Replay, state: TopicState) -> None:
        self._conn = connection
        self._state = state
        self._callbacks: list[EventCallback] = []
        self._closed = False

    # -- identity ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def ordering(self) -> str:
        return self._state.ordering

    @property
    def connection(self) -> Connection | Replay:
        """The connection (or replay) this handle belongs to."""
        return self._conn

    @property
    def topic_state(self) -> TopicState:
        """The pipeline's state of this topic: its store (and the store's change
        cursors), orderer position and counters. Read it on the runtime thread."""
        return self._state

    # -- reads ---------------------------------------------------------------------

    def _read(self, fn: Callable[[], Any]) -> Any:
        return self._conn._call(fn, what=f"reading topic {self.name!r}")

    @property
    def entities(self) -> dict[str, dict[str, Any]]:
        """``{entity_id: state}``: server state plus pending optimistic patches."""
        views: dict[str, dict[str, Any]] = self._read(self._state.store.views)
        return views

    @property
    def server_entities(self) -> dict[str, dict[str, Any]]:
        """Confirmed server state only (no optimistic overlay), as ``srv.truth`` has it."""
        ents: dict[str, dict[str, Any]] = self._read(lambda: dict(self._state.store.entities))
        return ents

    def get(self, entity_id: str) -> dict[str, Any] | None:
        view: dict[str, Any] | None = self._read(lambda: self._state.store.view(entity_id))
        return None if view is None else dict(view)

    def __len__(self) -> int:
        n: int = self._read(lambda: len(self._state.store.entities))
        return n

    @property
    def df(self) -> pd.DataFrame:
        """One row per entity (index ``entity_id``), with a boolean ``_pending`` column
        (at most :data:`DF_MAX_COLUMNS` columns: fields past it go in ``_overflow``)."""
        import pandas as pd

        views = self.entities
        overflow: list[dict[str, Any]] | None = None
        extra = 0
        if sum(map(len, views.values())) > DF_MAX_COLUMNS:
            names: dict[str, None] = {}
            for v in views.values():
                names.update(dict.fromkeys(v))
            if len(names) > DF_MAX_COLUMNS:
                keep = set(list(names)[:DF_MAX_COLUMNS])
                extra = len(names) - DF_MAX_COLUMNS
                overflow = [{k: x for k, x in v.items() if k not in keep} for v in views.values()]
                views = {e: {k: x for k, x in v.items() if k in keep} for e, v in views.items()}
        frame = pd.DataFrame.from_dict(views, orient="index")
        if overflow is not None:
            frame[OVERFLOW_COLUMN] = pd.Series(overflow, index=frame.index, dtype=object)
            frame.attrs["overflow_fields"] = extra
        frame.index.name = "entity_id"
        if PENDING_FIELD in frame.columns:
            frame[PENDING_FIELD] = frame[PENDING_FIELD].fillna(False).astype(bool)
        else:
            frame[PENDING_FIELD] = False
        return frame.sort_index()

    @property
    def freshness(self) -> TopicFreshness:
        fresh: TopicFreshness = self._read(
            lambda: topic_freshness(self._state, self._conn.state, time.time())
        )
        return fresh

    @property
    def status(self) -> str:
        return self.freshness.status

    # -- callbacks -------------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event, outcome)`` for each applied event, on the runtime thread.

        Callbacks are isolated: one that raises is logged and the stream goes on.
        Returns a function that removes the callback.
        """
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def _dispatch(self, event: Event, outcome: str) -> None:
        for cb in tuple(self._callbacks):
            try:
                cb(event, outcome)
            except Exception as exc:
                self._conn._callback_failed(f"on_event callback on {self.name!r}", exc)

    # -- writes ----------------------------------------------------------------------

    def mutate(self, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0) -> Mutation:
        """Change an entity optimistically; returns at once with a ``Mutation``."""
        _check_patch(patch)
        result: Mutation = self._conn._run(
            self._conn._mutate(self.name, entity_id, patch, timeout),
            what="topic.mutate",
        )
        return result

    async def mutate_async(
        self, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0
    ) -> Mutation:
        _check_patch(patch)
        result: Mutation = await self._conn._runtime.wrap(
            self._conn._mutate(self.name, entity_id, patch, timeout)
        )
        return result

    def unsubscribe(self) -> None:
        """Release this handle; the server subscription ends with the last one."""
        if not self._closed:
            self._closed = True
            self._conn._release(self)

    async def unsubscribe_async(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn._release_async(self)

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<Topic {st.name!r} {st.status} ordering={st.ordering} "
            f"entities={len(st.store.entities)} applied={st.applied}>"
        )
