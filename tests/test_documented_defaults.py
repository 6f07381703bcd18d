"""Documented defaults match the code.

Every named default in the package is written as::

    #: What it is: 1,000.
    NAME: Final = 1_000

This test reads the number in the ``#:`` comment and compares it with the
constant's value, so the docs cannot drift from the code (websockets' docstring
once said 60 s while the code said 90 s).
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PATTERN = re.compile(
    r"^#: (?P<doc>.*?): (?P<num>[0-9][0-9,_]*(?:\.[0-9]+)?)(?:[ .][^\n]*)?\n"
    r"(?P<name>[A-Z_][A-Z0-9_]*): Final\b",
    re.MULTILINE,
)


def _documented() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "rtnb").rglob("*.py")):
        text = path.read_text()
        for m in PATTERN.finditer(text):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out.append((module, m["name"], m["num"]))
    return out


DOCUMENTED = _documented()


def test_the_pattern_finds_the_core_defaults() -> None:
    names = {name for _, name, _ in DOCUMENTED}
    assert {
        "DEFAULT_DEDUPE_MAX_ENTRIES",
        "DEFAULT_GAP_TIMEOUT",
        "DEFAULT_MUTATION_TIMEOUT",
    } <= names


@pytest.mark.parametrize(("module", "name", "num"), DOCUMENTED)
def test_documented_default_matches_the_constant(module: str, name: str, num: str) -> None:
    value = getattr(importlib.import_module(module), name)
    documented = float(num.replace(",", "").replace("_", ""))
    assert float(value) == documented, f"{module}.{name} is {value}, its comment says {num}"
