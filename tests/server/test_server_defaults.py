"""The limits table in docs/DESIGN.md matches ``ServerConfig``'s defaults."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import re

from rtnb.server import config as server_config
from rtnb.server.config import ServerConfig

DESIGN = pathlib.Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md"
ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| `(?P<value>[^`]+)` \|", re.MULTILINE)


def _documented() -> dict[str, object]:
    text = DESIGN.read_text()
    section = text[text.index("### Server limits") :]
    return {m["name"]: ast.literal_eval(m["value"]) for m in ROW.finditer(section)}


def test_every_limit_is_documented_with_its_default() -> None:
    documented = _documented()
    defaults = ServerConfig()
    fields = {f.name for f in dataclasses.fields(ServerConfig)} - {
        "topics",
        "heartbeat_interval",
        "retention",
        "batch_max_messages",
        "batch_max_bytes",
    }
    assert fields <= set(documented), f"undocumented: {sorted(fields - set(documented))}"
    for name, value in documented.items():
        assert getattr(defaults, name) == value, f"{name}: code {getattr(defaults, name)!r}"


def test_each_default_is_one_named_constant() -> None:
    defaults = ServerConfig()
    for name in _documented():
        constant = getattr(server_config, f"DEFAULT_{name.upper()}", None)
        if constant is None and name == "http_rate_limit":
            constant = server_config.DEFAULT_HTTP_RATE
        assert constant == getattr(defaults, name), name
