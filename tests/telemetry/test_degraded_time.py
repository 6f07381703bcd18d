"""One definition of degraded time: summary, incidents, the Dashboard counter and the
charts all read the same seconds off one recorded outage of a real server."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

import rtnb
from rtnb.charts import data as chart_data
from rtnb.server import serve
from rtnb.widgets.dashboard import CountersFeed
from tests.client.conftest import HEARTBEAT, connect, publish
from tests.conftest import wait_until


class NoLoop:
    def call_soon_threadsafe(self, fn: Any) -> None: ...

    def call_later(self, delay: float, fn: Any) -> None: ...


@pytest.mark.slow
def test_summary_incidents_dashboard_and_charts_agree_on_one_outage() -> None:
    with serve(port=0, heartbeat_interval=HEARTBEAT) as srv:
        srv.declare("incidents")
        conn = connect(srv)
        try:
            topic = conn.subscribe("incidents")
            publish(srv, 3)
            wait_until(lambda: len(topic) == 3 and topic.freshness.status == "live")
            srv.chaos.stall(2.0)  # the server goes silent; the client degrades, reconnects
            wait_until(lambda: conn.state.status is not rtnb.Status.SUBSCRIBED, 10)
            wait_until(lambda: conn.state.status is rtnb.Status.SUBSCRIBED, 20)
            log = conn.log
            # every row of the outage, recovery steps included
            statuses = set(log.states["status"].astype(str))
            assert {"degraded", "reconnecting", "connecting"} <= statuses

            summary = log.summary()
            found = log.incidents()
            incidents_s = float(found["duration_s"].sum())
            feed = CountersFeed(NoLoop(), lambda c, b: None, conn=conn, wall=time.time)
            counter = conn.call(lambda: feed.figures(time.monotonic()), what="counters")
            win = chart_data.window(log, None, None, 100)
            chart_s = float((chart_data.degraded_rows(log, win, budget=100)["duration_s"]).sum())
        finally:
            conn.close()

    assert len(found) >= 1 and (found["outcome"] == "recovered").all()
    degraded_s = summary["degraded_s"]
    # one outage of ~2 s plus the recovery steps: a figure, not a near-zero
    assert degraded_s > 0.5
    assert math.isclose(incidents_s, degraded_s, abs_tol=1e-6)
    assert math.isclose(chart_s, degraded_s, abs_tol=1e-6)
    assert abs(counter["degraded"] - degraded_s) <= 0.05 + 1e-9  # shown to 0.1 s
    assert counter["degradedNow"] is False
    # the old counter's definition (degraded + reconnecting only) falls short of it
    seconds = log.snapshot("states", ()).tally["seconds"]
    partial = seconds.get("degraded", 0.0) + seconds.get("reconnecting", 0.0)
    assert partial < degraded_s
