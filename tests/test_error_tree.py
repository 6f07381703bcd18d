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


def test_errors_that_replaced_builtin_raises_keep_those_builtins() -> None:
    # issue 21: these were raised as the builtin on the right; callers catching it still do
    kept = {
        rtnb.ServerStopped: RuntimeError,
        rtnb.ServerStartError: RuntimeError,
        rtnb.PortInUse: OSError,
        rtnb.RecordingExists: FileExistsError,
        rtnb.SetupError: RuntimeError,
        rtnb.DemoFilesMissing: FileNotFoundError,
    }
    for cls, builtin in kept.items():
        assert issubclass(cls, rtnb.RtnbError) and issubclass(cls, builtin), cls
    assert issubclass(rtnb.DemoFilesMissing, rtnb.SetupError)
    assert rtnb.PortInUse(98, "taken").errno == 98


#: Builtin raises left in rtnb besides TypeError/ValueError (a wrong argument): not
#: conditions a caller handles, but bugs, protocols of Python itself, or misuse.
#: (path, builtin) -> how many, and why.
BUILTIN_RAISES: dict[tuple[str, str], tuple[int, str]] = {
    ("rtnb/__init__.py", "AttributeError"): (1, "module __getattr__ protocol"),
    ("rtnb/widgets/dashboard.py", "AttributeError"): (1, "__getattr__ protocol"),
    ("rtnb/telemetry/otel.py", "ImportError"): (1, "a missing optional extra, as Python does"),
    ("rtnb/core/machine.py", "AssertionError"): (2, "machine table invariants (a bug)"),
    ("rtnb/protocol/urls.py", "AssertionError"): (1, "unreachable"),
    ("rtnb/telemetry/parquet.py", "AssertionError"): (2, "schema invariant (a bug)"),
    ("rtnb/server/storage.py", "NotImplementedError"): (1, "abstract method"),
    ("rtnb/transports/http.py", "NotImplementedError"): (1, "abstract method"),
    ("rtnb/widgets/feed.py", "NotImplementedError"): (2, "abstract methods"),
    ("rtnb/client/replay_player.py", "RuntimeError"): (1, "checkpoint invariant (a bug)"),
    ("rtnb/server/snapshots.py", "RuntimeError"): (1, "snapshot invariant (a bug)"),
    ("rtnb/widgets/assets.py", "RuntimeError"): (1, "an import cycle in rtnb's own JS (a bug)"),
    ("rtnb/server/handle.py", "RuntimeError"): (1, "chaos.restart() from the server's thread"),
    ("rtnb/server/redis_store.py", "RuntimeError"): (1, "1000 append conflicts in a row"),
    ("rtnb/server/catchup.py", "LookupError"): (1, "internal: retention passed, caught in session"),
}


def builtin_raises() -> dict[tuple[str, str], int]:
    import ast
    import builtins
    from pathlib import Path

    root = Path(rtnb.__file__).resolve().parent
    found: dict[tuple[str, str], int] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            cls = getattr(builtins, exc.id, None) if isinstance(exc, ast.Name) else None
            if not (inspect.isclass(cls) and issubclass(cls, BaseException)):
                continue
            if cls in (TypeError, ValueError):
                continue
            key = (path.relative_to(root.parent).as_posix(), cls.__name__)
            found[key] = found.get(key, 0) + 1
    return found


def test_errors_raised_on_purpose_are_rtnb_errors_not_builtins() -> None:
    found = builtin_raises()
    allowed = {key: count for key, (count, _) in BUILTIN_RAISES.items()}
    new = {key: n for key, n in found.items() if n > allowed.get(key, 0)}
    assert not new, (
        f"builtin raises {new}: raise an RtnbError subclass (keeping the builtin as a "
        "second base if callers may catch it), or list it in BUILTIN_RAISES with why"
    )
    assert found == allowed, "BUILTIN_RAISES lists raises that are gone: update it"
