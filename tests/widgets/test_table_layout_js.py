"""The table's pure layout helpers (``common.js``, run in node): date-times read as a
person reads them, and column widths that fit the box with the widest shrinking first."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

COMMON_JS = Path(__file__).parents[2] / "rtnb" / "widgets" / "static" / "common.js"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]


def _node(tmp_path: Path, names: str, body: str, data: Any) -> Any:
    module = tmp_path / "common.mjs"
    module.write_text(COMMON_JS.read_text())
    (tmp_path / "data.json").write_text(json.dumps(data))
    script = (
        f"import {{ {names} }} from {json.dumps(module.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        f"const data = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'data.json'))}));\n"
        f"console.log(JSON.stringify({body}));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    return json.loads(out.stdout)


def test_date_times_show_the_time_today_and_the_date_another_day(tmp_path: Path) -> None:
    now = "2026-12-02T15:00:00Z"
    cases = {
        "2026-12-02T10:17:53Z": "10:17:53",
        "2026-12-02T10:17:53.123456Z": "10:17:53",
        "2026-12-02T11:17:53+01:00": "10:17:53",
        "2026-12-01T23:59:59Z": "2026-12-01 23:59:59",
        "2026-12-02T10:17Z": "10:17:00",
        "2026-12-02": "2026-12-02",  # a date alone is not a date-time
        "2026-12-02T10:17:53": "2026-12-02T10:17:53",  # no zone: which instant is unknown
        "inc-2026-12-02T10:17:53Z": "inc-2026-12-02T10:17:53Z",
        "payments: 5xx": "payments: 5xx",
    }
    shown = _node(
        tmp_path,
        "fmtTimestamp, fmtValue",
        "data.cases.map(s => [fmtTimestamp(s, new Date(data.now)), fmtValue(s) === fmtTimestamp(s)])",
        {"cases": list(cases), "now": now},
    )
    assert [s for s, _ in shown] == list(cases.values())
    assert all(same for _, same in shown), "a table cell shows strings as fmtTimestamp does"


def test_column_widths_fit_the_budget_widest_first(tmp_path: Path) -> None:
    rng = random.Random(5)
    cases = []
    for _ in range(400):
        n = rng.randint(1, 12)
        natural = [rng.randint(4, 30) for _ in range(n)]
        keep = rng.randint(0, min(2, n))
        cases.append({"natural": natural, "budget": rng.randint(10, 200), "keep": keep})
    results = _node(
        tmp_path,
        "fitWidths",
        "data.map(c => fitWidths(c.natural, c.budget, c.keep))",
        cases,
    )
    floor = 10
    for case, widths in zip(cases, results, strict=True):
        natural, budget, keep = case["natural"], case["budget"], case["keep"]
        assert len(widths) == len(natural)
        assert widths[:keep] == natural[:keep], "the id and actions columns keep their width"
        for w, nat in zip(widths[keep:], natural[keep:], strict=True):
            assert min(nat, floor) <= w <= nat
        if sum(natural) <= budget:
            assert widths == natural
            continue
        shrunk = [w for w, nat in zip(widths, natural, strict=True) if w < nat]
        # the shrunk columns are level, and no untouched column is wider than them
        assert len(set(shrunk)) <= 1, (case, widths)
        if shrunk:
            level = shrunk[0]
            assert all(w <= level for w in widths[keep:]), (case, widths)
        if sum(widths) > budget:  # over budget only when nothing can shrink any more
            assert all(w <= floor for w in widths[keep:]), (case, widths)
        else:  # fitted, and shrunk no more than needed
            assert sum(widths) > budget - len(shrunk), (case, widths)


def test_bidi_controls_in_values_are_shown_not_obeyed(tmp_path: Path) -> None:
    # "\u202eevil-id" rendered raw displays as "di-live"
    cases = {
        "\u202eevil-id": "\\u202Eevil-id",
        "a\u2066b\u2069c": "a\\u2066b\\u2069c",
        "\u200fx\u061c": "\\u200Fx\\u061C",
        "plain שלום": "plain שלום",  # right-to-left text itself is left alone
    }
    shown = _node(
        tmp_path, "fmtValue, showBidi", "data.map(s => [fmtValue(s), showBidi(s)])", list(cases)
    )
    assert [a for a, _ in shown] == list(cases.values())
    assert [b for _, b in shown] == list(cases.values())
    nested = _node(tmp_path, "fmtValue", "fmtValue(data)", {"k": "\u202e"})
    assert "\u202e" not in nested and "\\u202E" in nested


def test_a_sparse_row_is_densified_as_the_table_reads_it(tmp_path: Path) -> None:
    static = COMMON_JS.parent
    for name in ("common.js", "table_store.js"):
        (tmp_path / name).write_text((static / name).read_text())
    script = (
        f"import {{ densify }} from {json.dumps((tmp_path / 'table_store.js').as_uri())};\n"
        "console.log(JSON.stringify(densify(['e1', 3, 0, 'a', 4, {k: 1}], 5)));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout) == ["e1", 3, "a", None, None, None, {"k": 1}]
