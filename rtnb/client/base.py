"""``BaseSource``: what a live :class:`~rtnb.client.connection.Connection` and a
:class:`~rtnb.client.replay.Replay` share, written once (httpx's ``BaseClient``
behind ``Client`` and ``AsyncClient``).

It holds the plumbing both front-ends had twice: running work on rtnb's runtime
thread (:meth:`call`), state callbacks (:meth:`on_state`), the topic handles
(:attr:`topics`, :meth:`release`), routing applied events to the handles that
have ``on_event`` callbacks (:meth:`listen`), and the context-manager dunders.
Subclasses say what differs: where the topic states come from, how a topic
ends, how to close.

What a :class:`~rtnb.client.topic.Topic` handle calls on its owner is this
class's public methods and nothing else (``call``, ``state``, ``now``, ``loop``,
``mutate``/``mutate_async``, ``release``/``release_async``, ``listen``,
``callback_failed``): a typed seam instead of a friend protocol of private names.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, Self

from ..core.status import Status
from ..protocol.errors import RtnbError
from .runtime import DEFAULT_CALL_TIMEOUT, Runtime, get_runtime
from .topic_view import TopicReads

if TYPE_CHECKING:
    from ..core.pipeline import TopicState
    from ..protocol.frames import Event
    from .mutation import Mutation
    from .state import ConnectionState
    from .topic import Topic


logger = logging.getLogger("rtnb")

#: ``listener(event, outcome)``: what :meth:`BaseSource.listen` routes applied events to.
Listener = Callable[["Event", str], None]

_NO_LISTENERS: Final[tuple[Listener, ...]] = ()


def _check_patch(patch: object) -> None:
    if not isinstance(patch, dict) or not patch:
        raise ValueError(f"patch must be a non-empty dict, got {patch!r}")


class BaseSource(TopicReads, ABC):
    """The shared base of :class:`Connection` and :class:`Replay` (see the module doc)."""

    #: what goes on after a user callback raised ("the stream continues")
    _goes_on: str = "stream"

    def __init__(self) -> None:
        self._runtime: Runtime = get_runtime()
        self._handles: dict[str, list[Topic]] = {}
        self._state_callbacks: list[Callable[[ConnectionState], Any]] = []
        #: per topic, the listeners of handles that have ``on_event`` callbacks (copied on
        #: write: a callback may remove itself while its topic's listeners are called)
        self._listeners: dict[str, dict[Topic, Listener]] = {}
        self._routes: dict[str, tuple[Listener, ...]] = {}

    # -- what subclasses provide ------------------------------------------------------

    @property
    @abstractmethod
    def state(self) -> ConnectionState:
        """The current connection state (an immutable snapshot)."""

    @abstractmethod
    def now(self) -> float:
        """The clock ages are measured on, in unix seconds."""

    @abstractmethod
    def close(self) -> None:
        """Stop (a connection: release this holder's hold)."""

    async def close_async(self) -> None:
        """The awaitable form of :meth:`close`."""
        await asyncio.to_thread(self.close)

    @abstractmethod
    def _send_mutation(
        self, topic: str, entity_id: str, patch: dict[str, Any], timeout: float
    ) -> Coroutine[Any, Any, Mutation]:
        """The coroutine (run on the runtime loop) that sends a mutation."""

    @abstractmethod
    def _set_apply_hook(self, hook: Callable[[TopicState, Event, Any], None] | None) -> None:
        """Have the pipeline call ``hook`` for every applied event (None: not at all)."""

    @abstractmethod
    def _topic_released(self, topic: str) -> None:
        """The last handle on ``topic`` was released (runtime thread)."""

    # -- running on the runtime thread --------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """rtnb's runtime event loop (where state, stores and callbacks live)."""
        return self._runtime.loop

    def in_runtime_thread(self) -> bool:
        """True on rtnb's runtime thread (inside a callback), where blocking calls deadlock."""
        return self._runtime.in_runtime_thread()

    def call(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Run ``fn`` on rtnb's runtime thread (directly if already there); its result.

        ``what`` names the call in a timeout error. Widgets build their feeds this way.
        """
        if self._runtime.in_runtime_thread():
            return fn()

        async def call() -> Any:
            return fn()

        try:
            return self._runtime.run(call(), what=what, timeout=DEFAULT_CALL_TIMEOUT)
        except RtnbError as exc:  # says what happened; the runtime's frames add nothing
            raise exc.with_traceback(None) from None

    def _run(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        what: str,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> Any:
        try:
            return self._runtime.run(coro, what=what, timeout=timeout)
        except RtnbError as exc:
            raise exc.with_traceback(None) from None

    def callback_failed(self, what: str, exc: BaseException) -> None:
        """A user callback raised: log it (the stream goes on)."""
        logger.warning(
            "rtnb: %s raised %s: %s (the %s continues)",
            what,
            type(exc).__name__,
            exc,
            self._goes_on,
        )

    # -- state ----------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def transport(self) -> str:
        return self.state.transport

    def on_state(self, callback: Callable[[ConnectionState], Any]) -> Callable[[], None]:
        """Call ``callback(state)`` on every transition (on the runtime thread).
        Returns a function that removes the callback."""
        self._state_callbacks.append(callback)

        def remove() -> None:
            if callback in self._state_callbacks:
                self._state_callbacks.remove(callback)

        return remove

    def _notify_state(self, state: ConnectionState) -> None:
        """Tell the ``on_state`` callbacks (each isolated: one that raises is logged)."""
        for cb in tuple(self._state_callbacks):
            try:
                cb(state)
            except Exception as exc:
                self.callback_failed("on_state callback", exc)

    # -- topic handles ------------------------------------------------------------------------

    @property
    def topics(self) -> dict[str, Topic]:
        """The subscribed topics (one handle each)."""
        return {name: hs[0] for name, hs in self._handles.items() if hs}

    def _add_handle(self, topic: str, make: Callable[[], Topic], *, what: str) -> Topic:
        """A new handle on ``topic`` made by ``make`` on the runtime thread, and kept."""

        def add() -> Topic:
            handle = make()
            self._handles.setdefault(topic, []).append(handle)
            return handle

        handle: Topic = self.call(add, what=what)
        return handle

    def release(self, handle: Topic) -> None:
        """Release a handle (``topic.unsubscribe()``); the topic ends with its last one."""
        self.call(lambda: self._release_now(handle), what="topic.unsubscribe")

    async def release_async(self, handle: Topic) -> None:
        """The awaitable form of :meth:`release`."""
        await asyncio.to_thread(self.release, handle)

    def _release_now(self, handle: Topic) -> None:
        name = handle.name
        self.listen(handle, None)
        handles = self._handles.get(name, [])
        if handle in handles:
            handles.remove(handle)
        if not handles:
            self._handles.pop(name, None)
            self._topic_released(name)

    def listen(self, handle: Topic, listener: Listener | None) -> None:
        """Route the events applied to ``handle``'s topic to ``listener(event, outcome)``,
        or stop (None). Runtime thread only. The pipeline calls back only while some
        handle listens, so topics nobody listens to pay no call per event."""
        name = handle.name
        mine = self._listeners.get(name, {})
        if listener is None:
            if handle not in mine:
                return
            mine = {h: fn for h, fn in mine.items() if h is not handle}
        else:
            mine = {**mine, handle: listener}
        if mine:
            self._listeners[name] = mine
            self._routes[name] = tuple(mine.values())
        else:
            self._listeners.pop(name, None)
            self._routes.pop(name, None)
        self._set_apply_hook(self._route if self._routes else None)

    def _route(self, ts: TopicState, event: Event, outcome: Any) -> None:
        listeners = self._routes.get(ts.name, _NO_LISTENERS)
        if listeners:
            text = str(outcome)
            for listener in listeners:
                listener(event, text)

    # -- mutations ------------------------------------------------------------------------------

    def mutate(
        self, topic: str, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0
    ) -> Mutation:
        """Change an entity of ``topic`` optimistically (``topic.mutate`` does this)."""
        _check_patch(patch)
        result: Mutation = self._run(
            self._send_mutation(topic, entity_id, patch, timeout), what="topic.mutate"
        )
        return result

    async def mutate_async(
        self, topic: str, entity_id: str, patch: dict[str, Any], *, timeout: float = 10.0
    ) -> Mutation:
        """The awaitable form of :meth:`mutate`."""
        _check_patch(patch)
        result: Mutation = await self._runtime.wrap(
            self._send_mutation(topic, entity_id, patch, timeout)
        )
        return result

    # -- with ---------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_async()
