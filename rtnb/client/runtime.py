"""One background thread per process running the asyncio loop every connection uses.

Why a thread: a notebook cell that runs ``time.sleep(10)`` blocks the kernel's
own loop, and rtnb must keep streaming, logging and updating widgets while it
does. The runtime thread owns all sockets and timers; public sync calls hop
onto it with :func:`asyncio.run_coroutine_threadsafe` and wait for the result.
A sync call made *from* the runtime thread (e.g. inside an ``on_event``
callback) would wait for itself forever, so it raises instead and names the
awaitable form to use. No nested event loop is ever needed (rtnb does not use
``nest-asyncio``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

from ..protocol.errors import LocalProtocolError, WaitTimeout

T = TypeVar("T")

#: Seconds a sync call waits for the runtime thread by default: 30.
DEFAULT_CALL_TIMEOUT: Final = 30.0
#: Seconds interpreter exit waits for connections to close: 2.
SHUTDOWN_TIMEOUT: Final = 2.0


class Runtime:
    """The process-wide runtime loop thread (created lazily, stopped at exit)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="rtnb-runtime", daemon=True)
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_runtime_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
        what: str = "this call",
    ) -> T:
        """Run ``coro`` on the runtime loop and wait for its result from another thread."""
        if self.in_runtime_thread():
            coro.close()
            raise LocalProtocolError(
                f"{what} was made from rtnb's runtime thread (inside a callback?), where "
                "waiting would deadlock; use the awaitable form (e.g. `await ..._async()`) "
                "or schedule the work outside the callback"
            )
        if not self._thread.is_alive():
            coro.close()
            raise LocalProtocolError("rtnb's runtime has shut down (interpreter exit?)")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            if fut.done():  # the coroutine's own TimeoutError (3.11: the same class)
                raise
            fut.cancel()
            raise WaitTimeout(f"{what} did not finish within {timeout} s") from None

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a plain function on the runtime loop from any thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def wrap(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the runtime loop from *another* running loop (async API)."""
        if asyncio.get_running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def on_shutdown(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` at interpreter exit (until :meth:`forget` removes it)."""
        self._closers.append(closer)

    def forget(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Drop a closer that is no longer needed (its connection closed already),
        so a closed connection and its log are not kept alive until exit."""
        if closer in self._closers:
            self._closers.remove(closer)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close registered connections, then stop the loop and join the thread."""
        if not self._thread.is_alive():
            return

        async def _close_all() -> None:
            closers, self._closers = self._closers, []
            await asyncio.gather(*(c() for c in closers), return_exceptions=True)

        if not self.in_runtime_thread():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_close_all(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_runtime_thread():
            self._thread.join(timeout)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime, started on first use."""
    global _runtime
    with _lock:
        if _runtime is None or not _runtime.thread.is_alive():
            _runtime = Runtime()
            atexit.register(_runtime.shutdown)
        return _runtime
