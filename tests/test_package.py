"""The package surface: a sorted ``__all__`` and an import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import rtnb

HEAVY = ("pandas", "altair", "anywidget", "ipywidgets", "uvicorn", "starlette", "pyarrow", "httpx")


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert list(rtnb.__all__) == sorted(rtnb.__all__)
    for name in rtnb.__all__:
        assert getattr(rtnb, name) is not None, name


@pytest.mark.slow
def test_importing_rtnb_does_not_import_heavy_dependencies() -> None:
    code = f"import sys, json, rtnb; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_unknown_attribute_raises_attribute_error_naming_it() -> None:
    try:
        rtnb.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
