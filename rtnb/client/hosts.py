"""Which host session a call comes from, so a shared connection is shared per session.

A Jupyter kernel (JupyterLab, Notebook 7, VS Code, Colab) serves one user: one
session per process. Voilà starts a kernel per visitor: one process each. But
``marimo run`` runs every visitor's app in a thread of one process, and
``panel serve`` every visitor's session in one process too: keyed per process, two
visitors who ``rtnb.connect`` with the same URL and token would get one
``Connection``, and one visitor's ``close()`` would end the other's stream.

:func:`session_key` names the caller's session: ``""`` where the process is the
session, ``"marimo:<n>"`` / ``"panel:<id>"`` where the host has several. It only
looks at hosts already imported (``import rtnb`` imports neither), and never
fails: a host whose internals moved is treated as one session per process.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_numbers = itertools.count(1)
# marimo's contexts are unhashable dataclasses: number them by id, checked by a weakref
# (an id can be reused once its object is gone)
_marimo: dict[int, tuple[weakref.ref[Any], str]] = {}
# session key -> callbacks run when the host says that session ended
_enders: dict[str, list[Callable[[], None]]] = {}


def _marimo_context() -> Any:
    if "marimo" not in sys.modules:
        return None
    try:
        from marimo._runtime.context.types import safe_get_context

        ctx = safe_get_context()
    except Exception:  # another marimo version: one session per process
        return None
    while ctx is not None and getattr(ctx, "parent", None) is not None:
        ctx = ctx.parent  # an embedded app belongs to its host app's session
    return ctx


def _marimo_key(ctx: Any) -> str:
    with _lock:
        known = _marimo.get(id(ctx))
        if known is not None and known[0]() is ctx:
            return known[1]
        key = f"marimo:{next(_numbers)}"

        def forget(_ref: Any, ident: int = id(ctx)) -> None:
            with _lock:
                if _marimo.get(ident, (None, ""))[1] == key:
                    del _marimo[ident]
            _ended(key)

        try:
            _marimo[id(ctx)] = (weakref.ref(ctx, forget), key)
        except TypeError:  # not weak-referenceable: key it by id for the process
            return f"marimo:id-{id(ctx):x}"
        return key


def _panel_key() -> str:
    if "panel" not in sys.modules:
        return ""
    try:
        from panel.io.state import state

        doc = state.curdoc
        context = None if doc is None else doc.session_context
        if context is None or not getattr(context, "id", None):
            return ""  # panel in a notebook kernel: the kernel is the session
        key = f"panel:{context.id}"
        with _lock:
            first = key not in _enders
            _enders.setdefault(key, [])
        if first and doc is not None:
            doc.on_session_destroyed(lambda _ctx: _ended(key))
        return key
    except Exception:  # another panel version: one session per process
        return ""


def session_key() -> str:
    """The caller's host session: ``""`` when the process is the session."""
    ctx = _marimo_context()
    if ctx is not None:
        return _marimo_key(ctx)
    return _panel_key()


def on_session_end(key: str, callback: Callable[[], None]) -> None:
    """Call ``callback()`` when host session ``key`` ends (marimo: its context is
    gone; Panel: the session is destroyed). Nothing for ``""``: the process is it."""
    if not key:
        return
    with _lock:
        _enders.setdefault(key, []).append(callback)


def _ended(key: str) -> None:
    with _lock:
        callbacks = _enders.pop(key, [])
    for callback in callbacks:
        with contextlib.suppress(Exception):  # a session's end must not fail the host's teardown
            callback()
