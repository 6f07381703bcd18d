"""No module reaches another package's private names (the seams are public).

The packages are ``rtnb``'s subpackages (``protocol``, ``core``, ``transports``,
``telemetry``, ``client``, ``charts``, ``widgets``, ``server``); the top-level
modules (``rtnb/__init__.py``, ``rtnb/__main__.py``) form a package of their own.
Import direction is import-linter's job (``[tool.importlinter]`` in
``pyproject.toml``, run by ``make lint``); this test checks what it cannot.

The rule, checked statically on every module's AST (which object an
attribute is read from is not known statically, so the rule is about names):

1. No import of a private name or module from another package:
   ``from rtnb.core.x import _y``, ``from ..core import _x`` and
   ``import rtnb.core._x`` are refused unless the importer is in ``core``.
2. No access to a private attribute that its own package does not define:
   ``obj._name`` (and ``getattr``/``hasattr``/``delattr(obj, "_name")``) is
   allowed only if some module of the same package defines ``_name`` -- as a
   function, method or class, an assignment (``self._name = …``, ``_name = …``,
   ``setattr(obj, "_name", …)``, a class-level field) or a ``__slots__`` entry. A name defined only in
   another package (``conn._session`` read by a widget, ``log._rings`` read by
   a chart, ``codec._decoder`` read by the core) is a reach across a seam.
   Dunder (``__x__``) and sunder (``_x_``, e.g. IPython's ``_repr_mimebundle_``)
   names are protocols, not private, and are not checked.

The rule can be fooled (a package that defines a ``_session`` of its own may
read anyone's ``._session``), so it is a tripwire, not a proof of types; the
seams it guards are ``rtnb.Source``, ``EnvelopeLog.snapshot``/``version``/``tail``,
``Connection.add_tap`` and the codec's ``decode_unchecked``.
"""

from __future__ import annotations

import ast
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rtnb"

#: (module, name): reaches into a third party's private names, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("rtnb.widgets.assets", "anywidget._file_contents"): (
        "anywidget has no public API for watching an ES module for hot reload"
    ),
    ("rtnb.client.hosts", "marimo._runtime.context"): (
        "marimo has no public API naming the session a cell runs in (marimo run runs every "
        "visitor's session as a thread of one process; shared connections are keyed by it)"
    ),
}
#: public names that are each module's own switch, always called through their module
MODULE_SWITCHES: dict[str, str] = {
    "enable": "rtnb.charts.render.enable() (altair renderer), rtnb.panel.enable() (Panel bundle)",
    # found when implementation modules lost their __all__ (issue 21); left as they are:
    "now": "wall-clock seconds, in the server's session and the transports (one meaning)",
    "table_rows": "replay_timeline's tuples of a log table; otel's dicts of a snapshot",
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and not name.endswith("_")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package(module: str) -> str:
    parts = module.split(".")
    # rtnb/__init__.py and rtnb/__main__.py are the top-level package "rtnb"
    if len(parts) == 1 or (len(parts) == 2 and (ROOT / f"{parts[1]}.py").exists()):
        return "rtnb"
    return parts[1]


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    drop = node.level - 1 if is_pkg else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join(base + ([node.module] if node.module else []))


def _defined_private_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                for c in ast.walk(node):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str):
                        names.add(c.value)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            names.add(node.args[1].value)
    return {n for n in names if _is_private(n)}


def _reaches(
    modules: dict[str, ast.Module], defined: dict[str, set[str]]
) -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    for module, tree in modules.items():
        package = _package(module)
        is_pkg = (ROOT.parent / module.replace(".", "/") / "__init__.py").exists()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_pkg, node)
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    parts = full.split(".")
                    if any(_is_private(p) for p in parts) and (
                        not full.startswith("rtnb.") or _package(full) != package
                    ):
                        found.append((module, node.lineno, f"from {target} import {alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if any(_is_private(p) for p in parts) and (
                        not alias.name.startswith("rtnb.") or _package(alias.name) != package
                    ):
                        found.append((module, node.lineno, f"import {alias.name}"))
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                if _is_private(node.attr) and node.attr not in defined[package]:
                    found.append((module, node.lineno, f"._{node.attr.lstrip('_')}"))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "delattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _is_private(node.args[1].value)
                and node.args[1].value not in defined[package]
            ):
                found.append((module, node.lineno, f"{node.func.id}(…, {node.args[1].value!r})"))
    return [f for f in found if not any(f[0] == mod and name in f[2] for (mod, name) in ALLOWED)]


def _defined_by_package(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    defined: dict[str, set[str]] = defaultdict(set)
    for module, tree in modules.items():
        defined[_package(module)] |= _defined_private_names(tree)
    return defined


def test_no_module_reaches_another_packages_private_names() -> None:
    modules = _modules()
    assert {_package(m) for m in modules} >= {
        "protocol", "core", "transports", "telemetry", "client", "charts", "widgets", "server"
    }  # fmt: skip
    found = _reaches(modules, _defined_by_package(modules))
    assert not found, "private names reached across packages:\n" + "\n".join(
        f"  {mod}:{line}: {what}" for mod, line, what in found
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from rtnb.core.pipeline import _Private\n", "from rtnb.core.pipeline import _Private"),
        ("from ..core import _helper\n", "from rtnb.core import _helper"),
        ("import rtnb.core._hidden\n", "import rtnb.core._hidden"),
        ("def f(conn):\n    return conn._session\n", "._session"),
        ("def f(log):\n    return getattr(log, '_rings')\n", "getattr(…, '_rings')"),
    ],
)
def test_the_rule_catches_each_kind_of_reach(source: str, expected: str) -> None:
    """The checker fails on a widget module that reaches into another package."""
    modules = {"rtnb.widgets.probe": ast.parse(source)}
    defined = {"widgets": set(), "core": {"_Private", "_helper"}}
    found = _reaches(modules, defaultdict(set, defined))
    assert [what for _, _, what in found] == [expected]


def test_the_rule_allows_a_packages_own_private_names() -> None:
    source = "class A:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n"
    source += "        return self._x, A()._x, super()._repr_mimebundle_(), self.__dict__\n"
    modules = {"rtnb.widgets.probe": ast.parse(source)}
    defined = _defined_by_package(modules)
    assert _reaches(modules, defined) == []


def _names(mod: object) -> list[str]:
    """A public module's ``__all__``; for an implementation module (no ``__all__``) the
    public classes and functions it defines itself."""
    if hasattr(mod, "__all__"):
        return list(mod.__all__)
    name = getattr(mod, "__name__", "")
    return [
        key
        for key, value in vars(mod).items()
        if not key.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == name
    ]


def test_no_two_public_names_alike() -> None:
    """A name any module exports (its ``__all__``, or the classes and functions an
    implementation module defines) means one thing across rtnb (re-exports of the same
    object are fine): ``TopicState`` is the pipeline's, not also the machine's."""
    import importlib

    owners: dict[str, dict[object, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module in sorted(_modules()):
        if module == "rtnb.__main__":
            continue
        mod = importlib.import_module(module)
        for name in _names(mod):
            if name.startswith("__"):
                continue
            value = getattr(mod, name)
            key = value if isinstance(value, int | float | str | tuple | frozenset) else id(value)
            owners[name][key].append(module)
    clashes = {name: sorted(m for ms in by.values() for m in ms) for name, by in owners.items()
               if len(by) > 1 and name not in MODULE_SWITCHES}  # fmt: skip
    assert not clashes, f"public names meaning different things: {clashes}"
