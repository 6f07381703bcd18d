"""Every error rtnb defines is an ``rtnb.RtnbError``, and the tree says where it sits.

``except rtnb.RtnbError`` catches whatever rtnb raises on purpose (builtin bases such
as ``TimeoutError`` or ``ValueError`` are kept alongside, for callers that catch
those). The tree is written once, in the docstring of ``rtnb/protocol/errors.py``
(as httpx's ``_exceptions.py`` does); a new error class must be added there.

Every module of the package is imported (the server's and the widgets' too) and
each exception class it defines is checked, so a class added anywhere is seen.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import rtnb
from rtnb.protocol import errors

#: Exception classes rtnb defines that are deliberately not RtnbError: none.
ALLOWED_OUTSIDE: frozenset[str] = frozenset()


def rtnb_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(rtnb.__path__, "rtnb."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.values(), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_walk_finds_errors_in_every_layer() -> None:
    # the walk itself is checked: errors of the protocol, client, transports,
    # telemetry and server packages are all seen
    packages = {c.__module__.split(".")[1] for c in rtnb_exceptions()}
    assert {"protocol", "client", "transports", "telemetry", "server"} <= packages


def test_every_exception_class_rtnb_defines_is_an_rtnb_error() -> None:
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in rtnb_exceptions()
        if not issubclass(c, rtnb.RtnbError)
        and f"{c.__module__}.{c.__qualname__}" not in ALLOWED_OUTSIDE
    ]
    assert outside == [], (
        "these errors are not rtnb.RtnbError: derive them from it (keep a builtin base "
        f"too if callers may catch it) and add them to the tree in rtnb/protocol/errors.py: {outside}"
    )


def test_the_tree_in_the_errors_docstring_names_every_error() -> None:
    doc = errors.__doc__ or ""
    missing = [
        c.__qualname__ for c in rtnb_exceptions() if not re.search(rf"\b{c.__qualname__}\b", doc)
    ]
    assert missing == [], f"add these to the error tree in rtnb/protocol/errors.py: {missing}"


def test_builtin_bases_callers_may_catch_are_kept() -> None:
    from rtnb.server.datadir import DataDirLocked
    from rtnb.server.hub import OutcomeUnknown, StorageFailed
    from rtnb.server.idempotency import IdempotencyConflict
    from rtnb.server.topiclog import TooLarge
    from rtnb.telemetry.schema import TelemetryFileError

    assert issubclass(rtnb.WaitTimeout, TimeoutError)
    assert issubclass(rtnb.ConnectionClosed, ConnectionError)
    assert issubclass(TelemetryFileError, ValueError)
    for cls in (DataDirLocked, StorageFailed, OutcomeUnknown):
        assert issubclass(cls, RuntimeError), cls
    for cls in (IdempotencyConflict, TooLarge):
        assert issubclass(cls, ValueError), cls
    assert issubclass(rtnb.server.AuthError, rtnb.RtnbError)
