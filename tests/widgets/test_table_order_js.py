"""A column's own order (``StreamTable(order=...)``) in the browser's sort (``table_order.js``,
run in node): ``sort_by="-severity"`` puts critical first, not the alphabet's last."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ORDER_JS = Path(__file__).parents[2] / "rtnb" / "widgets" / "static" / "table_order.js"
SEVERITIES = ["low", "medium", "high", "critical"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

SCRIPT = """
import { RowOrder } from %(module)s;
const data = %(data)s;
const rows = new Map(data.rows.map(([id, sev]) => [id, { id, v: [sev] }]));
const store = { rows, columns: ["severity"] };
const ids = (o) => o.order.map((r) => r.id);
const out = {};
for (const [name, initial, orders] of data.cases) out[name] = ids(new RowOrder(store, initial, orders));
// a header click cycles through the same order: ascending first
const clicked = new RowOrder(store, null, { severity: data.severities });
clicked.cycle("severity");
out.clicked = ids(clicked);
// a live update moves a changed row to its ranked place (the merge path)
const live = new RowOrder(store, "-severity", { severity: data.severities });
const row = rows.get("a");
row.v = ["critical"];
live.apply({ reset: false, added: [], upserted: [row], deleted: [] });
out.merged = ids(live);
console.log(JSON.stringify(out));
"""


def _node(tmp_path: Path, data: Any) -> Any:
    module = tmp_path / "table_order.mjs"
    module.write_text(ORDER_JS.read_text())
    script = SCRIPT % {"module": json.dumps(module.as_uri()), "data": json.dumps(data)}
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_a_column_with_an_order_sorts_by_it_and_unlisted_values_come_after(tmp_path: Path) -> None:
    rows = [["a", "medium"], ["b", "critical"], ["c", "low"], ["d", "high"], ["e", "weird"],
            ["f", None]]  # fmt: skip
    cases = [
        ["alphabet_desc", "-severity", {}],
        ["ranked_desc", "-severity", {"severity": SEVERITIES}],
        ["ranked_asc", "severity", {"severity": SEVERITIES}],
    ]
    got = _node(tmp_path, {"rows": rows, "cases": cases, "severities": SEVERITIES})
    assert got["alphabet_desc"][:4] == ["e", "a", "c", "d"]  # weird, medium, low, high: no use
    assert got["ranked_desc"] == ["e", "b", "d", "a", "c", "f"]  # empty values stay last
    assert got["ranked_asc"] == ["c", "a", "d", "b", "e", "f"]
    assert got["clicked"] == got["ranked_asc"]
    assert got["merged"] == ["e", "a", "b", "d", "c", "f"]  # a: medium -> critical
