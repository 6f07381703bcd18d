"""``send_from_browser``: a front end's custom message, delivered the way a kernel does."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import anywidget
import pytest

from tests.helpers import send_from_browser


class Echo(anywidget.AnyWidget):
    _esm = "export default {}"


def test_the_message_and_its_buffers_reach_the_widgets_callbacks() -> None:
    w = Echo()
    got: list[tuple[Any, Any]] = []
    w.on_msg(lambda _w, content, buffers: got.append((content, buffers)))
    send_from_browser(w, {"t": "hello"}, [b"\x01"])
    assert got == [({"t": "hello"}, [b"\x01"])]
    w.close()


def test_an_exception_in_the_handler_fails_the_test_instead_of_being_logged() -> None:
    # ipywidgets logs and swallows it; the helper raises it again
    w = Echo()

    def boom(_w: Any, content: Any, buffers: Any) -> None:
        raise KeyError(content["t"])

    w.on_msg(boom)
    with pytest.raises(KeyError, match="act"):
        send_from_browser(w, {"t": "act"})
    w.close()


def test_no_test_reaches_into_ipywidgets_message_handler() -> None:
    # the helper is the one place that knows how ipywidgets delivers a custom message
    tests = Path(__file__).resolve().parents[1]
    reach_ins = [
        f"{path.relative_to(tests)}:{node.lineno}"
        for path in sorted(tests.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "_handle_custom_msg"
    ]
    assert reach_ins == [], f"use tests.helpers.send_from_browser instead: {reach_ins}"
