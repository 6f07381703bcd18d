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

#: The count after issue 21 items 1 and 3 (163 before them, on 2ef96ca).
CEILING = 163

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
    shown = "\n".join(f"{m}: {len(v)}" for m, v in sorted(found.items(), key=lambda kv: -len(kv[1])))
    assert total <= CEILING, (
        f"{total} obj._private reaches across modules (ceiling {CEILING}): use or add a "
        f"public, typed method instead of reaching into another object's privates.\n{shown}"
    )


if __name__ == "__main__":
    found = all_reaches()
    verbose = "-v" in sys.argv
    for module, hits in sorted(found.items(), key=lambda kv: -len(kv[1])):
        print(f"{len(hits):4d}  {module}")
        if verbose:
            for line, src in hits:
                print(f"        {line}: {src}")
    print(f"{sum(map(len, found.values())):4d}  total")
    print(Counter(src.rsplit(".", 1)[1] for hits in found.values() for _, src in hits).most_common(15))
