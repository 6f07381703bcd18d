"""Layers talk through public, typed seams: few ``obj._private`` reaches across modules.

Issue 21 ("the client middle"): drivers reached into the cores (``pipeline.fault``,
``store.add_pending``) and ``Topic`` into its connection (``self._conn._call``,
``_run``, ``_mutate``, ``_release``). This meta-test counts, over every module's
AST, the attribute reads and writes ``obj._name`` (one leading underscore) where

* ``obj`` is not ``self``, ``cls`` or ``super()`` (a class using its own private
  parts is fine), and
* ``obj`` is not a plain local name whose ``_name`` the same module defines (as a
  function, method, class attribute, slot or ``self._name = ...``): a module
  using the private parts of objects of its own classes (``new._seen`` in a
  ``Deduper`` classmethod) is a friend, not a reach across a seam. An attribute
  chain (``self._conn._call``, ``self.deduper._seen``) always counts: it reaches
  through another object.

It is a heuristic (it sees names, not types), so the count is pinned by a ceiling
that only goes down: lower it when you remove reaches. ``python
tests/test_private_reach.py`` prints them by module.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rtnb"

#: The count after issue 21 items 1 and 3 (18 before them, on 2ef96ca: 9 of them
#: Topic reaching into its connection, 3 `handle._dispatch`, 6 elsewhere).
CEILING = 6

#: Private by spelling only: namedtuple's public API.
_PUBLIC_SPELLINGS = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in _PUBLIC_SPELLINGS


def _defined(tree: ast.Module) -> set[str]:
    """Private names the module defines (functions, class attributes, slots, self.x = ...)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return {n for n in names if _private(n)}


def reaches(path: Path) -> list[tuple[int, str]]:
    """``(line, source)`` of each cross-module ``obj._private`` use in the module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _defined(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        value = node.value
        if isinstance(value, ast.Name) and (value.id in ("self", "cls") or node.attr in own):
            continue
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
            continue
        found.append((node.lineno, ast.unparse(node)))
    return found


def all_reaches() -> dict[str, list[tuple[int, str]]]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        found = reaches(path)
        if found:
            out[str(path.relative_to(ROOT.parent))] = found
    return out


def test_the_scan_finds_a_reach() -> None:
    tree = "class A:\n    def f(self, other):\n        return other._secret + self._mine\n"
    sample = ROOT.parent / "tests" / "_private_reach_sample.py"
    sample.write_text(tree, encoding="utf-8")
    try:
        assert reaches(sample) == [(3, "other._secret")]
    finally:
        sample.unlink()


def test_private_reaches_across_modules_stay_under_the_ceiling() -> None:
    found = all_reaches()
    total = sum(map(len, found.values()))
    shown = "\n".join(
        f"{m}: {len(v)}" for m, v in sorted(found.items(), key=lambda kv: -len(kv[1]))
    )
    assert total <= CEILING, (
        f"{total} obj._private reaches across modules (ceiling {CEILING}): use or add a "
        f"public, typed method instead of reaching into another object's privates.\n{shown}"
    )


#: The drivers: they move bytes, run timers and route what the cores return.
DRIVERS = ("session", "connection", "replay", "replay_player", "base")
#: What changes a topic's store (only the pipeline calls these).
_STORE_WRITES = frozenset({"apply", "measure", "replace", "add_pending", "remove_pending"})
#: What builds a core's per-topic state (only the pipeline builds it).
_CORE_BUILDERS = frozenset({"TopicState", "TopicStore", "make_orderer"})


def driver_writes(path: Path) -> list[tuple[int, str]]:
    """``(line, source)`` of each write a driver makes into another object: an attribute
    set or deleted on anything but ``self`` (or its own class's objects), a store
    changed, a core's per-topic state built."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("self", "cls")
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            value = node.value
            mine = isinstance(value, ast.Name) and (value.id in ("self", "cls") or node.attr in own)
            if not mine and not node.attr.startswith("__"):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in _STORE_WRITES
                and isinstance(func.value, ast.Attribute)
                and func.value.attr == "store"
            ) or (isinstance(func, ast.Name) and func.id in _CORE_BUILDERS):
                found.append((node.lineno, ast.unparse(func)))
    return found


def test_the_driver_scan_finds_each_kind_of_write() -> None:
    sample = ROOT.parent / "tests" / "_driver_write_sample.py"
    sample.write_text(
        "def f(self, pipeline, ts):\n"
        "    pipeline.fault = None\n"
        "    self.pipeline.on_apply = f\n"
        "    ts.store.add_pending('e', 'm', {})\n"
        "    TopicState('t', None, None)\n"
        "    self.mine = pipeline.take_fault()\n",
        encoding="utf-8",
    )
    try:
        assert [src for _, src in driver_writes(sample)] == [
            "pipeline.fault",
            "self.pipeline.on_apply",
            "ts.store.add_pending",
            "TopicState",
        ]
    finally:
        sample.unlink()


def test_drivers_never_write_into_the_cores() -> None:
    """Issue 21 item 1: the session, the replay player and the front-ends give the cores
    inputs as method calls (``pipeline.take_fault()``, ``pipeline.mutate(...)``,
    ``pipeline.attach_topic(...)``) and route what comes back; they never set a core's
    attributes, change a store or build a topic's state themselves."""
    found = {
        name: hits for name in DRIVERS if (hits := driver_writes(ROOT / "client" / f"{name}.py"))
    }
    assert found == {}, f"drivers writing into the cores: {found}"


if __name__ == "__main__":
    found = all_reaches()
    verbose = "-v" in sys.argv
    for module, hits in sorted(found.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(hits):4d}  {module}")
        if verbose:
            for line, src in hits:
                print(f"        {line}: {src}")
    print(f"{sum(map(len, found.values())):4d}  total")
    print(
        Counter(src.rsplit(".", 1)[1] for hits in found.values() for _, src in hits).most_common(15)
    )
