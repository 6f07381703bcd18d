"""ReplayControls in a real browser: clicking the scrub bar seeks the replay, and the
StreamTable of the replay shows the state at that instant (JupyterLab + Chromium).

The scrubber's screenshot goes to ``test-artifacts/``; with ``RTNB_UPDATE_SCREENSHOTS=1``
it also replaces ``docs/img/replay_controls.png``."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rtnb.protocol import encode
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.recorded import Recording, frames_table
from rtnb.widgets.lab import Lab
from tests.widgets.lab_harness import (
    BrowserUnavailable,
    LabPage,
    chromium_page,
    new_workdir,
    publish_screenshot,
    require_chromium,
    screenshot_path,
    write_notebook,
)

T0 = 1_790_000_000.0
STEPS = 200  # one event a second: entity e{k % 5} gets {"n": k} at T0 + k
CELLS = [
    "import rtnb\nfrom rtnb.widgets import StreamTable\n"
    "rep = rtnb.replay(rtnb.EnvelopeLog.read_parquet('rec.parquet'), speed=None, paused=True)\n"
    "items = rep.subscribe('items')",
    "StreamTable(items, title='items')",
    "ctl = rtnb.ReplayControls(rep)\nctl",
    # speeds set from Python: 20x (notebook 02's) is in the list; 3x gets an entry of its own
    "for speed in (20, 3):\n"
    "    display(rtnb.ReplayControls(rtnb.replay(rtnb.EnvelopeLog.read_parquet('rec.parquet'),"
    " speed=speed, paused=True)))",
]


def _write_recording(path: Path, steps: int = STEPS) -> None:
    topics = {"items": {"ordering": "sequence", "gap_timeout": 1.0}}
    rows: list[Any] = [(T0, "topics", "websocket", 1, json.dumps(topics).encode(), True)]
    snap = {"op": "snapshot", "topic": "items", "entities": [], "token": "x" * 12, "sequence": 0}
    rows.append((T0, "frame", "websocket", 1, encode(snap), True))
    for k in range(1, steps + 1):
        event = {
            "op": "event", "id": f"ev{k}", "type": "item.updated", "topic": "items",
            "sequence": k, "entityId": f"e{k % 5}", "occurredAt": "2026-09-21T00:00:00Z",
            "replayToken": "t" * 12, "payload": {"n": k},
        }  # fmt: skip
        rows.append((T0 + k, "frame", "websocket", 1, encode(event), True))
    log = EnvelopeLog()  # the connection's own story, as a live session logs it
    log.append_state(T0, "connecting", "idle", "connecting over websocket", 1, 0.0)
    log.append_state(T0, "authenticated", "connecting", "websocket open", 1, 0.0)
    log.append_state(T0, "subscribed", "authenticated", "subscribed to items", 1, 0.0)
    recording = Recording(frames_table(rows), {"payloads": True, "started_at": T0})
    log.set_frame_source(lambda: recording)
    log.to_parquet(path)


def expected_n(at: float, entity: int) -> int:
    """``n`` of entity ``e{entity}`` after every event at or before ``at``."""
    k = math.floor(at - T0 + 1e-9)
    k = min(k, STEPS)
    while k % 5 != entity:
        k -= 1
    return k


pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPage]:
    try:
        require_chromium()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    work = new_workdir()
    _write_recording(work / "rec.parquet")
    write_notebook(work / "replay.ipynb", CELLS)
    with (
        Lab(work, work / ".state", expose_app=True) as server,
        chromium_page(work / ".chromium") as (_context, page),
    ):
        lp = LabPage(page)
        lp.open(server.notebook_url("replay.ipynb"))
        lp.run_all()
        lp.wait_js(
            "() => document.querySelector('.rtnb-replay-bar') !== null"
            " && document.querySelector('.rtnb-table[data-title=\"items\"]') !== null",
            90,
            "the replay controls and the table to render",
        )
        lp.kernel_idle()
        yield lp
        assert not lp.errors, f"JavaScript errors in the page: {lp.errors}"


def _cell(lp: LabPage, entity: str) -> list[str]:
    texts: list[str] = lp.page.evaluate(
        "id => Array.from(document.querySelector('.rtnb-table[data-title=\"items\"]')"
        '?.querySelector(`tr[data-id="${id}"]`)?.children ?? []).map(c => c.textContent)',
        entity,
    )
    return texts


@pytest.mark.parametrize("fraction", [0.5, 0.2, 0.8])
def test_clicking_the_scrub_bar_shows_the_state_at_that_instant(
    lab: LabPage, fraction: float
) -> None:
    lp = lab
    bar = lp.page.locator(".rtnb-replay-bar").first
    box = bar.bounding_box()
    assert box is not None
    lp.page.mouse.click(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    value = int(lp.page.evaluate("() => document.querySelector('.rtnb-replay-bar').value"))
    assert 0 < value < 1000, "the click moved the bar"
    at = T0 + value / 1000 * STEPS  # the bar spans the recording: T0 .. T0 + STEPS
    for entity in (1, 3):
        want = str(expected_n(at, entity))
        lp.wait_js(
            "([id, want]) => Array.from(document.querySelector("
            '\'.rtnb-table[data-title="items"]\')?.querySelector(`tr[data-id="${id}"]`)'
            "?.children ?? []).some(c => c.textContent.trim() === want)",
            20,
            f"e{entity} to show n={want} at {value / 10:.1f}% of the recording",
            arg=[f"e{entity}", want],
        )
    if fraction == 0.8:
        shot = screenshot_path("replay_controls.png")
        lp.page.locator(".jp-Notebook").first.screenshot(path=str(shot))
        publish_screenshot(shot, "replay_controls.png")


def test_the_speed_menu_shows_the_replays_speed_whatever_it_is(lab: LabPage) -> None:
    lp = lab
    lp.wait_js(
        "() => document.querySelectorAll('.rtnb-replay-speed').length === 3",
        60,
        "three replay controls",
    )
    shown = lp.page.evaluate(
        "() => Array.from(document.querySelectorAll('.rtnb-replay-speed'))"
        ".map(s => [s.value, s.selectedOptions[0]?.textContent ?? ''])"
    )
    assert shown == [["max", "max"], ["20", "20×"], ["3", "3×"]]
    options = lp.page.evaluate(
        "() => Array.from(document.querySelectorAll('.rtnb-replay-speed')[2].options)"
        ".map(o => o.value)"
    )
    assert options == ["1", "3", "10", "20", "60", "600", "max"]  # in order
