"""``Source``: the one public seam between a connection and what reads it.

Widgets (``rtnb.widgets``), charts (``rtnb.charts``) and the recorder read a
live :class:`~rtnb.client.connection.Connection` and a
:class:`~rtnb.client.replay.Replay` through this protocol and nothing else:

* ``state`` / ``on_state``: the connection's state and its changes;
* ``log``: the telemetry log it writes;
* ``topic_states``: the pipeline's per-topic states (each with its store and
  the store's change cursors, ``state.store.open_changes()``);
* ``open_resolutions()``: a cursor over mutations resolved from now on;
* ``identity``: who the server said we are (its ``authenticated`` frame),
  never decoded from the token;
* ``loop`` and ``call(fn)``: rtnb's runtime loop, and running ``fn`` on it;
* ``now()``: the clock ages are measured on (a replay's is its position).

Everything that touches ``topic_states`` or a store runs on the runtime thread
(inside ``call`` or a callback scheduled on ``loop``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..core.ledger import ResolutionCursor
    from ..core.pipeline import TopicState
    from ..telemetry.log import EnvelopeLog
    from .session import ConnectionState
    from .topic import Topic


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

    @property
    def topic_states(self) -> Mapping[str, TopicState]:
        """The pipeline's topic states by name (read them on the runtime thread)."""
        ...

    def open_resolutions(self) -> ResolutionCursor:
        """A cursor over the mutations resolved from now on (runtime thread)."""
        ...

    @property
    def identity(self) -> ConfirmedIdentity | None:
        """Who the server confirmed we are; None until it has (and for a replay)."""
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
