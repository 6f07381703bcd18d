"""No two views of one connection disagree: Topic, ReplayTopic, widget payloads, browser text.

All of them call :func:`rtnb.core.freshness.freshness`; these tests hold them to
it over random connection and topic states, and run the browser's
``activityText`` (``common.js``, in node) against the Python ``activity_text``.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtnb.client.replay_topic import ReplayTopic
from rtnb.client.session import ConnectionState
from rtnb.client.topic import Topic
from rtnb.client.topic_view import topic_view
from rtnb.core.freshness import activity_text
from rtnb.core.pipeline import Pipeline, TopicState
from rtnb.core.status import Status
from rtnb.widgets.status import connection_payload, topic_payload

COMMON_JS = Path(__file__).parents[2] / "rtnb" / "widgets" / "static" / "common.js"
TOPIC_STATUSES = ["pending", "live", "replaying", "forbidden", "unknown", "refused"]


class _Conn:
    """What Topic reads of a connection: its state, and a way onto the runtime thread."""

    def __init__(self, state: ConnectionState, position_s: float) -> None:
        self.state = state
        self.position_s = position_s

    def call(self, fn: Any, *, what: str) -> Any:
        return fn()


def _topic_state(status: str, last: float | None) -> TopicState:
    ts = Pipeline().add_topic("incidents")
    ts.status = status  # type: ignore[assignment]
    ts.last_event_at = last
    return ts


# retry times at least a second from "now", so the test's own run time cannot cross one
retry_offsets = st.none() | st.floats(min_value=1.0, max_value=60.0) | st.floats(-60.0, -1.0)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(list(Status)),
    st.integers(min_value=0, max_value=20),
    retry_offsets,
    st.sampled_from(TOPIC_STATUSES),
    st.none() | st.floats(min_value=0.0, max_value=3600.0),
)
def test_topic_replay_topic_and_widgets_agree(
    status: Status, attempt: int, retry: float | None, topic_status: str, ago: float | None
) -> None:
    wall = time.time()
    cs = ConnectionState(
        status, None, "why", attempt, None if retry is None else wall + retry, "websocket", wall
    )
    ts = _topic_state(topic_status, None if ago is None else wall - ago)
    conn = _Conn(cs, position_s=wall)
    live_view = Topic(conn, ts).freshness  # type: ignore[arg-type]
    replay_view = ReplayTopic(conn, ts).freshness  # type: ignore[arg-type]
    pill = topic_payload(topic_view(ts), cs, wall)
    strip = connection_payload(cs, [topic_view(ts)], wall)

    assert live_view.status == replay_view.status == pill["status"]
    assert strip["topics"][0]["status"] == pill["status"]
    assert live_view.activity == replay_view.activity == pill["activity"] == strip["activity"]
    assert live_view.attempt == replay_view.attempt == pill["attempt"] == strip["attempt"]
    if pill["status"] not in ("forbidden", "unknown", "refused"):
        assert strip["status"] == pill["status"]  # a connection of one topic says the same
    # the words for what the connection does: the same in Python and in the pill
    assert str(live_view).count("attempt") <= 1
    if live_view.status == "stale" and pill["activity"] != "reconnecting":  # (no countdown)
        assert activity_text(pill["activity"], attempt, None) in str(live_view)


def test_a_reconnect_storm_cannot_show_two_stories_at_once() -> None:
    """The reported bug: one widget counted down to "reconnecting now" while
    another, sent later, said "connecting (attempt 3)". Now a countdown that
    reached zero says what the later payload says."""
    wall = time.time()
    ts = _topic_state("live", wall - 5)
    before = ConnectionState(Status.RECONNECTING, None, "lost", 3, wall + 2.0, "websocket", wall)
    after = ConnectionState(Status.CONNECTING, None, "retry", 3, None, "websocket", wall + 2)
    old = topic_payload(topic_view(ts), before, wall)
    new = topic_payload(topic_view(ts), after, wall + 2.5)
    shown_old = activity_text(old["activity"], old["attempt"], old["retryIn"] - 2.5)
    shown_new = activity_text(new["activity"], new["attempt"], new["retryIn"])
    assert shown_old == shown_new == "connecting (attempt 3)"


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_browser_words_match_python(tmp_path: Path) -> None:
    rng = random.Random(7)
    cases = [
        {
            "activity": rng.choice(
                ["reconnecting", "connecting", "degraded", "closed", "idle", "live"]
            ),
            "attempt": rng.randint(0, 12),
            "retryIn": None if rng.random() < 0.2 else round(rng.uniform(0, 40), 3),
            "elapsed": round(rng.uniform(0, 45), 3),
        }
        for _ in range(500)
    ]
    module = tmp_path / "common.mjs"
    module.write_text(COMMON_JS.read_text())
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = (
        f"import {{ activityText }} from {json.dumps(module.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        f"const cases = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'cases.json'))}));\n"
        "console.log(JSON.stringify(cases.map("
        "c => activityText(c.activity, c.attempt, c.retryIn, c.elapsed))));\n"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    browser = json.loads(out.stdout)
    python = [
        activity_text(
            c["activity"],
            c["attempt"],
            None if c["retryIn"] is None else c["retryIn"] - c["elapsed"],
        )
        for c in cases
    ]
    assert browser == python
