""" "log" means the telemetry log only: a module's stdlib logger is named ``logger``.

``conn.log``, ``Replay.log`` and ``EnvelopeLog`` are the telemetry log users read;
a module-level ``log = logging.getLogger(...)`` beside them reads as one of those
(issue 21: one name per thing). Checked on every module's AST: each module-level
assignment from ``logging.getLogger(...)`` (or a bare ``getLogger(...)``) binds
the name ``logger``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rtnb"


def _is_get_logger(node: ast.expr | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "getLogger") or (
        isinstance(f, ast.Name) and f.id == "getLogger"
    )


def module_loggers() -> list[tuple[str, str]]:
    """(module path, bound name) of every module-level ``... = logging.getLogger(...)``."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if not _is_get_logger(value):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]  # type: ignore[union-attr]
            for target in targets:
                name = target.id if isinstance(target, ast.Name) else ast.unparse(target)
                found.append((str(path.relative_to(ROOT.parent)), name))
    return found


def test_the_scan_sees_the_module_loggers() -> None:
    assert len(module_loggers()) >= 10  # server, client and widgets modules log


def test_every_module_level_logger_is_named_logger() -> None:
    misnamed = [(path, name) for path, name in module_loggers() if name != "logger"]
    assert misnamed == [], (
        f'name these module loggers `logger` ("log" is the telemetry log): {misnamed}'
    )
