"""Notebook 01's dashboard in a real JupyterLab: the incident table fits its box.

Its ``openedAt`` column (the sort key, newest first) was cut off at the right edge:
the natural widths of eight columns passed the output's width. The table now fits
the columns to the box (the widest text shrinks, with an ellipsis and the whole
text on hover) and shows today's date-times as ``10:17:53``.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from rtnb.widgets.lab import Lab
from tests.widgets.lab_harness import (
    ROOT,
    BrowserUnavailable,
    LabPage,
    chromium_page,
    new_workdir,
    require_chromium,
    screenshot_path,
)

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]

TABLE = '.rtnb-table[data-title="incidents"]'
#: per header of the incident table: its name and how far it passes the box's right edge
LAYOUT = f"""() => {{
  const t = document.querySelector('{TABLE}');
  const box = t.querySelector('.rtnb-scroll').getBoundingClientRect();
  const heads = [...t.querySelectorAll('thead th')].map(th =>
    [th.textContent.replace(/[▲▼]/g, '').trim(), th.getBoundingClientRect().right - box.right]);
  const stamps = [...t.querySelectorAll('tbody tr[data-id]')].map(tr => {{
    const i = heads.findIndex(([k]) => k === 'openedAt');
    const td = tr.children[i];
    return [td.textContent, td.title, td.scrollWidth <= td.clientWidth];
  }});
  return {{heads, stamps}};
}}"""


@pytest.mark.timeout(300)
def test_the_incident_table_shows_every_column_and_readable_times() -> None:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    work = new_workdir("rtnb-nb01-")
    nb = nbformat.read(ROOT / "notebooks" / "01_live_dashboard.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code[:2]  # connect (its own demo server), then the dashboard
    nbformat.write(nb, str(work / "01.ipynb"))
    with (
        Lab(work, work / ".state", expose_app=True) as server,
        chromium_page(work / ".chromium", width=1300, height=1000) as (_context, page),
    ):
        lp = LabPage(page)
        lp.open(server.notebook_url("01.ipynb"), timeout=120)
        lp.run_all()
        lp.wait_js(
            f"() => document.querySelectorAll('{TABLE} tbody tr[data-id]').length >= 3",
            120,
            "the dashboard's incident table to show three incidents",
        )
        layout = page.evaluate(LAYOUT)
        heads = dict(layout["heads"])
        assert "openedAt" in heads, layout
        assert all(over <= 1 for over in heads.values()), f"cut off at the right: {layout}"
        for text, title, whole in layout["stamps"]:
            assert re.fullmatch(r"\d\d:\d\d:\d\d", text), layout  # opened today, to the second
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", title), layout  # exact on hover
            assert whole, f"{text!r} does not fit its cell: {layout}"
        shot = screenshot_path("notebook01-incidents.png")
        page.locator(TABLE).first.screenshot(path=str(shot))
        assert not lp.errors, f"JavaScript errors in the page: {lp.errors}"
