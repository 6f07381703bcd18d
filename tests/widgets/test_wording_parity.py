"""One source of truth for the words: Python's table and the browser's copy say the same.

``rtnb/core/wording.py`` holds the templates; ``static/common.js`` has a verbatim
copy. The first test compares the tables; the second runs the browser's
``describe`` (in node) on the very payload a widget sends, for every status, and
compares its text with ``str(topic.freshness)`` in Python.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from rtnb.client.session import ConnectionState
from rtnb.client.topic import topic_freshness
from rtnb.client.topic_view import topic_view
from rtnb.core.pipeline import Pipeline, TopicState
from rtnb.core.status import Status
from rtnb.core.wording import WORDING, fmt_age
from rtnb.protocol import Error, Snapshot, Subscribed, encode
from rtnb.widgets.status import topic_payload

STATIC = Path(__file__).parents[2] / "rtnb" / "widgets" / "static"


def _js_wording() -> dict[str, str]:
    text = (STATIC / "common.js").read_text(encoding="utf-8")
    block = text[text.index("// wording:begin") : text.index("// wording:end")]
    body = block[block.index("({") + 1 : block.rindex("})") + 1]
    return json.loads(re.sub(r",\s*}", "}", body))  # type: ignore[no-any-return]


def test_the_browser_has_the_same_words_as_python() -> None:
    assert _js_wording() == WORDING


def _state(case: str, NOW: float) -> tuple[TopicState, ConnectionState]:
    p = Pipeline()
    ts = p.add_topic("incidents", stale_after=5.0 if case == "quiet" else None)
    conn = Status.SUBSCRIBED
    reason = "subscribed"
    if case in ("live", "quiet", "stale", "closed", "replaying"):
        p.feed(encode(Subscribed(topic="incidents", replay="none")), NOW - 30)
        p.feed(encode(Snapshot(topic="incidents", sequence=3, entities=[])), NOW - 30)
    if case == "live":
        ts.last_event_at = NOW - 2.5
    if case == "replaying":
        p.feed(encode(Subscribed(topic="incidents", replay="complete", latest_sequence=1203)), NOW)
    if case == "stale":
        conn, reason = Status.RECONNECTING, "heartbeat missed"
    if case == "closed":
        conn, reason = Status.CLOSED, "closed by the user"
    if case == "pending":
        conn = Status.CONNECTING
    code = {"refused": "too_many_subscriptions", "forbidden": "forbidden"}.get(case)
    if case == "unknown":
        code = "unknown_topic"
    if code is not None:
        p.feed(encode(Error(code=code, message="at most 2 subscriptions", topic="incidents")), NOW)
    retry = NOW + 3.5 if conn is Status.RECONNECTING else None
    cs = ConnectionState(conn, None, reason, 2 if retry else 0, retry, "websocket", NOW - 1)
    return ts, cs


CASES = ["live", "quiet", "replaying", "stale", "pending", "refused", "forbidden", "unknown",
         "closed"]  # fmt: skip


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_python_and_the_browser_say_the_same_for_every_status(tmp_path: Path) -> None:
    NOW = time.time()  # str(TopicFreshness) counts a retry down on the real clock
    payloads: dict[str, Any] = {}
    expected: dict[str, str] = {}
    for case in CASES:
        ts, cs = _state(case, NOW)
        payloads[case] = topic_payload(topic_view(ts), cs, NOW)
        fresh = topic_freshness(ts, cs, NOW)
        assert fresh.status == case, (case, fresh)
        expected[case] = str(fresh)
    ages = [0.0, 0.44, 9.96, 10.0, 59.9, 61.0, 3599.0, 3601.0, 7322.0]
    module = tmp_path / "common.mjs"
    module.write_text((STATIC / "common.js").read_text(encoding="utf-8"))
    (tmp_path / "data.json").write_text(json.dumps({"payloads": payloads, "ages": ages}))
    script = (
        f"import {{ describe, fmtAge }} from {json.dumps(module.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        f"const data = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'data.json'))}));\n"
        "const out = {ages: data.ages.map(fmtAge), texts: {}};\n"
        "for (const [k, f] of Object.entries(data.payloads)) "
        "out.texts[k] = describe(f, 0, 'incidents').text;\n"
        "console.log(JSON.stringify(out));\n"
    )
    run = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    )
    out = json.loads(run.stdout)
    assert out["ages"] == [fmt_age(a) for a in ages]
    assert out["texts"] == expected
