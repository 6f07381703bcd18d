"""``Topic``: one subscribed topic as the user sees it.

Reads (``entities``, ``get``, ``df``, ``freshness``) hop onto the runtime thread
so they see a consistent state even while events are being applied; from
inside a callback (already on the runtime thread) they read directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from ..core.freshness import activity_text, freshness
from ..core.pipeline import TopicState
from ..core.store import PENDING_FIELD
from ..core.wording import fmt_age, say
from ..protocol.errors import ConnectionClosed, LocalProtocolError, WaitTimeout
from ..protocol.frames import Event
from .mutation import Mutation
from .topic_view import refusal_reason, replay_missing

if TYPE_CHECKING:
    import pandas as pd

    from .base import BaseSource
    from .connection import Connection
    from .replay import Replay
    from .state import ConnectionState

#: Columns ``topic.df`` builds at most: 1,000 (pandas takes ~9 s for a frame of
#: 200,000 columns, which one hostile entity can have). Fields past it, in order of
#: first appearance, go into :data:`OVERFLOW_COLUMN` (a dict per row), and
#: ``df.attrs["overflow_fields"]`` says how many.
DF_MAX_COLUMNS: Final = 1_000
#: The column holding a row's fields past the column cap.
OVERFLOW_COLUMN: Final = "_overflow"

EventCallback = Callable[[Event, str], Any]

#: Seconds :meth:`Topic.wait_for` waits for data by default: 10.
DEFAULT_WAIT_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class TopicFreshness:
    """How fresh a topic's data is, for humans and widgets.

    ``status`` is ``live`` (subscribed, caught up), ``replaying`` (catching up
    after a reconnect or refreshing from a snapshot), ``quiet`` (subscribed,
    but no event for ``stale_after`` seconds), ``stale`` (the connection is
    not subscribed: data as of ``last_event_at``), ``pending`` (no data and
    not yet confirmed), ``forbidden`` (the server refused this topic for this
    role), ``unknown`` (no such topic on the server), ``refused`` (any other
    refusal, e.g. ``too_many_subscriptions``: ``reason`` has the server's
    words) or ``closed`` (the connection is closed). ``activity`` is what the
    connection is doing (``live``, ``connecting``, ``reconnecting``,
    ``degraded``, ``idle``, ``closed``). Both come from
    :func:`rtnb.core.freshness.freshness`, as the widgets' do, so no two views
    of one connection disagree; ``str()`` uses the words of
    :data:`rtnb.core.wording.WORDING`, as the browser does.
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
    #: the server's refusal, its message and code (``refused``, ``forbidden``,
    #: ``unknown``); for ``closed``, why the connection closed; for ``stale``, why the
    #: client froze the topic (its state passed ``Limits.max_topic_bytes``)
    reason: str | None = None
    #: events still to replay before the topic is live again (None: unknown or none)
    missing: int | None = None
    #: seconds without an event after which the topic is ``quiet`` (None: never)
    stale_after: float | None = None

    def __str__(self) -> str:
        retry_in = None
        if self.next_retry_at is not None and self.activity == "reconnecting":
            retry_in = self.next_retry_at.timestamp() - time.time()
        detail = activity_text(self.activity, self.attempt, retry_in)
        last = self.last_event_at
        as_of = say("no_data") if last is None else say("as_of", clock=f"{last:%H:%M:%S}")
        status = self.status
        if status == "live":
            return (
                say("live_no_data") if self.age_s is None else say("live", age=fmt_age(self.age_s))
            )
        if status == "quiet":
            return say(
                "quiet",
                quiet=fmt_age(self.age_s or 0.0),
                stale_after=fmt_age(self.stale_after or 0.0),
            )
        if status == "stale":
            if self.reason:  # frozen by the client: the reason, not the connection's activity
                return say("stale", as_of=as_of, activity=self.reason)
            return say("stale", as_of=as_of, activity=detail)
        if status == "pending":
            return say("pending", activity=detail or "waiting for the server")
        if status == "closed":
            return say("closed", reason=self.reason or detail)
        if status in ("forbidden", "unknown"):
            return say(status, topic=self.topic)
        if status == "refused":
            return say("refused", reason=self.reason or "the server refused this topic")
        if status == "replaying":
            if self.missing:
                return say("replaying", missing=f"{self.missing:,}")
            return say("replaying_snapshot")
        return status


def topic_freshness(st: TopicState, conn: ConnectionState, now: float) -> TopicFreshness:
    """``st``'s freshness under ``conn`` at ``now`` (Topic and ReplayTopic)."""
    retry_at = conn.next_retry_at
    last = st.last_event_at
    f = freshness(conn.status, conn.attempt, retry_at, st.status, last, now, st.stale_after)
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
        reason=conn.reason if f.status == "closed" else st.over_limit or refusal_reason(st),
        missing=replay_missing(st),
        stale_after=st.stale_after,
    )


def _match(
    frame: pd.DataFrame, where: str | Callable[[pd.DataFrame], object] | None
) -> tuple[pd.DataFrame | None, str]:
    """``(what wait_for returns, or None if nothing matches yet; why the query failed)``."""
    if frame.empty:
        return None, ""
    if where is None:
        return frame, ""
    if callable(where):
        return (frame if bool(where(frame)) else None), ""
    try:
        rows = frame.query(where)
    except Exception as exc:  # a column no entity has yet: the next event may bring it
        return None, f"{type(exc).__name__}: {exc}"
    return (rows if len(rows) else None), ""


def _utc(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC)


class Topic:
    """A live topic: current entities, a DataFrame view, freshness, mutations.

    A handle talks to its connection (or replay) only through the public methods
    of :class:`~rtnb.client.base.BaseSource`, which both share.
    """

    def __init__(self, connection: BaseSource, state: TopicState) -> None:
        self._conn = connection
        self._state = state
        self._callbacks: list[EventCallback] = []
        self._closed = False
        #: the connection routes this topic's events to :meth:`_dispatch` (set on the
        #: runtime thread only, while the handle has callbacks: see :meth:`on_event`)
        self._listening = False
        #: makes "add a callback, then see whether the handle is routed" one step
        #: against the runtime thread's "see the callbacks, then (un)route"
        self._routing = threading.Lock()

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
        return cast("Connection | Replay", self._conn)

    @property
    def topic_state(self) -> TopicState:
        """The pipeline's state of this topic: its store (and the store's change
        cursors), orderer position and counters. Read it on the runtime thread."""
        return self._state

    # -- reads ---------------------------------------------------------------------

    def _read(self, fn: Callable[[], Any]) -> Any:
        return self._conn.call(fn, what=f"reading topic {self.name!r}")

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

    def wait_for(
        self,
        where: str | Callable[[pd.DataFrame], object] | None = None,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> pd.DataFrame:
        """Block until the topic has data (``where``: rows that match); returns that DataFrame.

        ``where`` is a :meth:`pandas.DataFrame.query` string (``"status == 'open'"``: returns the
        matching rows, once there is one) or a function of :attr:`df` (returns ``df`` once it
        is truthy); ``None`` waits for any row. Data arrives in the background, so right after
        ``subscribe`` a topic may be empty: a fresh demo server opens its first incidents within
        a second. Raises :class:`rtnb.WaitTimeout` (a ``TimeoutError``) after ``timeout`` s,
        naming the topic, its freshness, its columns and the query's last error;
        :class:`rtnb.LocalProtocolError` at once for a topic the server refused or does not
        know; :class:`rtnb.ConnectionClosed` on a closed connection.
        """
        if self._conn.in_runtime_thread():  # data would never arrive: the loop waits
            raise LocalProtocolError(
                f"topic {self.name!r}: wait_for blocks, so it cannot run in an rtnb callback; "
                "read topic.df there instead"
            )
        arrived = threading.Event()
        remove = self.on_event(lambda _event, _outcome: arrived.set())
        deadline = time.monotonic() + timeout
        problem = ""
        try:
            while True:
                arrived.clear()
                fresh = self.freshness
                if fresh.status == "closed":
                    raise ConnectionClosed(f"topic {self.name!r}: the connection is closed")
                if fresh.status in ("unknown", "forbidden", "refused"):
                    raise LocalProtocolError(str(fresh)).with_traceback(None)
                frame = self.df
                found, problem = _match(frame, where)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    columns = ", ".join(c for c in frame.columns if c != PENDING_FIELD) or "none"
                    raise WaitTimeout(
                        f"topic {self.name!r}: no {'data' if where is None else repr(where)} "
                        f"within {timeout} s ({len(frame)} entities, columns: {columns}; {fresh})"
                        + (f"; the query failed: {problem}" if problem else "")
                    )
                # snapshots replace the state without an event: look again at least every 0.1 s
                arrived.wait(min(left, 0.1))
        finally:
            remove()

    # -- callbacks -------------------------------------------------------------------

    def on_event(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event, outcome)`` for each applied event, on the runtime thread.

        Callbacks are isolated: one that raises is logged and the stream goes on.
        Safe from any thread: the callback sees every event applied after ``on_event``
        returns. Returns a function that removes the callback.
        """
        with self._routing:
            self._callbacks.append(callback)
            routed = self._listening
        if not routed:  # route it before returning: the next event reaches the callback
            self._conn.call(self._route_events, what=f"on_event on topic {self.name!r}")

        def remove() -> None:
            with self._routing:
                if callback not in self._callbacks:
                    return
                self._callbacks.remove(callback)
                idle = not self._callbacks
            if idle:  # stop routing, without waiting for the runtime thread
                self._soon(self._route_events)

        return remove

    def _route_events(self) -> None:
        """Runtime thread: have the connection route this topic's events here while the
        handle has callbacks, and not otherwise (each applied event costs a call then).

        Every decision is taken here, on the runtime thread, from the callbacks present
        then, under the same lock as ``on_event``'s append-and-look: an ``on_event``
        racing a removal's queued stop either comes first (the stop sees its callback
        and keeps routing) or sees the routing stopped and hops here to restart it."""
        with self._routing:
            want = bool(self._callbacks) and not self._closed
            if want is self._listening:
                return
            self._listening = want
            self._conn.listen(self, self._dispatch if want else None)

    def _soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the runtime thread: now if already there, else soon (no wait)."""
        if self._conn.in_runtime_thread():
            fn()
            return
        with contextlib.suppress(RuntimeError):  # the loop is gone: nothing routes anyway
            self._conn.loop.call_soon_threadsafe(fn)

    def _dispatch(self, event: Event, outcome: str) -> None:
        for cb in tuple(self._callbacks):
            try:
                cb(event, outcome)
            except Exception as exc:
                self._conn.callback_failed(f"on_event callback on {self.name!r}", exc)

    # -- writes ----------------------------------------------------------------------

    def mutate(self, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0) -> Mutation:
        """Change an entity optimistically; returns at once with a ``Mutation``."""
        return self._conn.mutate(self.name, entity_id, patch, timeout=timeout)

    async def mutate_async(
        self, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0
    ) -> Mutation:
        return await self._conn.mutate_async(self.name, entity_id, patch, timeout=timeout)

    def unsubscribe(self) -> None:
        """Release this handle; the server subscription ends with the last one."""
        if not self._closed:
            self._closed = True
            self._conn.release(self)

    async def unsubscribe_async(self) -> None:
        if not self._closed:
            self._closed = True
            await self._conn.release_async(self)

    def __repr__(self) -> str:
        st = self._state
        return (
            f"<Topic {st.name!r} {st.status} ordering={st.ordering} "
            f"entities={len(st.store.entities)} applied={st.applied}>"
        )
