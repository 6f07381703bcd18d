"""``Source``: the one public seam between a connection and what reads it.

Widgets (``rtnb.widgets``), charts (``rtnb.charts``) and the recorder read a
live :class:`~rtnb.client.connection.Connection` and a
:class:`~rtnb.client.replay.Replay` through this protocol and nothing else:

* ``state`` / ``on_state``: the connection's state and its changes;
* ``log``: the telemetry log it writes;
* ``topic_view(name)`` / ``topic_views()``: each subscribed topic's facts now, an
  immutable :class:`TopicView` (status, freshness inputs, counts, events still to
  replay, the server's refusal), made by the client on the runtime thread;
* ``open_rows(name)``: a :class:`RowCursor` over a topic's rows and the ids changed
  since the last look (what a table reads; runtime thread);
* ``open_resolutions()``: a cursor over mutations resolved from now on;
* ``identity`` / ``wait_identity(timeout)``: who the server said we are (its
  ``authenticated`` frame), never decoded from the token;
* ``live``: a live connection (it can mutate), not a replay;
* ``loop`` and ``call(fn)``: rtnb's runtime loop, and running ``fn`` on it;
* ``now()``: the clock ages are measured on (a replay's is its position);
* ``subscribe(topic)``: a handle, which widgets read as a :class:`TopicHandle`.

The pipeline's mutable per-topic state (``Connection.topic_states``) stays the
client's. Cursors are used on the runtime thread (inside ``call`` or a callback
scheduled on ``loop``); ``topic_view`` and ``topic_views`` hop there themselves.
:data:`PENDING_FIELD` names the field a row carries while an optimistic mutation
on it is unconfirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

# Re-exported (``X as X``): widgets import these from this seam only.
from ..core.ledger import MutationRecord as MutationRecord
from ..core.ledger import ResolutionCursor as ResolutionCursor
from ..core.store import PENDING_FIELD as PENDING_FIELD
from .topic_view import RowCursor as RowCursor
from .topic_view import TopicView as TopicView

if TYPE_CHECKING:
    from ..telemetry.log import EnvelopeLog
    from .state import ConnectionState as ConnectionState
    from .topic import Topic

    def _topic_is_a_handle(t: Topic) -> TopicHandle:
        return t  # mypy proves rtnb.Topic implements TopicHandle


@dataclass(frozen=True, slots=True)
class ConfirmedIdentity:
    """Who the server authenticated this connection as (from its ``authenticated`` frame).

    ``role`` is what the server will check mutations against; show controls by
    it, but the server still decides.
    """

    tenant: str
    user: str
    role: str
    expires_at: float


@runtime_checkable
class Source(Protocol):
    """What a live connection and a replay both offer to widgets, charts and the recorder."""

    @property
    def url(self) -> str:
        """The server's base URL (``"replay"`` for a replay)."""
        ...

    @property
    def log(self) -> EnvelopeLog:
        """The telemetry log this source writes."""
        ...

    @property
    def state(self) -> ConnectionState:
        """The current connection state (immutable)."""
        ...

    def on_state(self, callback: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        """Call ``callback(state)`` on every transition (runtime thread); returns a remover."""
        ...

    def topic_view(self, name: str) -> TopicView | None:
        """Topic ``name``'s facts now (any thread); None if it is not subscribed."""
        ...

    def topic_views(self) -> Mapping[str, TopicView]:
        """Every subscribed topic's :class:`TopicView` now, by name (any thread)."""
        ...

    def open_rows(self, name: str) -> RowCursor:
        """A cursor over subscribed topic ``name``'s rows (runtime thread; close it)."""
        ...

    def open_resolutions(self) -> ResolutionCursor:
        """A cursor over the mutations resolved from now on (runtime thread)."""
        ...

    @property
    def identity(self) -> ConfirmedIdentity | None:
        """Who the server confirmed we are; None until it has (and for a replay)."""
        ...

    def wait_identity(self, timeout: float = 5.0) -> ConfirmedIdentity | None:
        """:attr:`identity`, waiting up to ``timeout`` s for the server (a replay: None)."""
        ...

    @property
    def live(self) -> bool:
        """True for a live connection (it can mutate); False for a replay."""
        ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """rtnb's runtime loop (widget feeds schedule their ticks on it)."""
        ...

    def call(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Run ``fn`` on the runtime thread (directly if already there); its result."""
        ...

    def now(self) -> float:
        """The wall clock ages are measured on, in unix seconds."""
        ...

    def subscribe(self, topic: str, *, stale_after: float | None = None) -> Topic:
        """A handle on ``topic`` (``stale_after``: seconds without an event until ``quiet``)."""
        ...


@runtime_checkable
class TopicHandle(Protocol):
    """What widgets use of a topic handle (``conn.subscribe(name)``, an ``rtnb.Topic``)."""

    @property
    def name(self) -> str:
        """The topic's name."""
        ...

    @property
    def connection(self) -> Source:
        """The connection (or replay) the handle belongs to."""
        ...

    def on_event(self, callback: Callable[[Any, str], Any]) -> Callable[[], None]:
        """Call ``callback(event, outcome)`` per applied event (runtime thread); a remover."""
        ...

    def get(self, entity_id: str) -> dict[str, Any] | None:
        """One entity's row now (pending patches applied), or None."""
        ...

    def mutate(self, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0) -> Any:
        """Change an entity optimistically (a replay refuses)."""
        ...

    def unsubscribe(self) -> None:
        """Release the handle."""
        ...
