"""rtnb.charts: valid Vega-Lite with bounded data, even for a 1,000,000-envelope log."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pytest
import vl_convert as vlc  # type: ignore[import-untyped]

import rtnb.charts as charts
from bench.telemetry import synthetic_log
from rtnb.charts import data
from rtnb.telemetry import EnvelopeLog
from tests.chaos_run import ChaosRun

CHARTS = ("lag", "timeline", "outcomes", "mutations")
SHIPPED_RECORDING = Path(__file__).parents[2] / "notebooks" / "data" / "chaos_run.parquet"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def million() -> EnvelopeLog:
    return synthetic_log(1_000_000)


def embedded_rows(spec: dict[str, Any]) -> int:
    return sum(len(rows) for rows in spec.get("datasets", {}).values())


@pytest.mark.slow
@pytest.mark.parametrize("name", CHARTS)
def test_each_chart_of_a_million_envelopes_is_valid_vega_lite_with_bounded_data(
    million: EnvelopeLog, name: str
) -> None:
    chart = getattr(charts, name)(million)
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    assert 0 < embedded_rows(spec) <= charts.MAX_ROWS
    png = vlc.vegalite_to_png(spec, scale=1)
    assert png.startswith(PNG) and len(png) > 5_000
    assert "<svg" in vlc.vegalite_to_svg(spec)


@pytest.mark.slow
def test_altairs_row_limit_stays_on(million: EnvelopeLog) -> None:
    for name in CHARTS:
        getattr(charts, name)(million).to_dict()
    assert alt.data_transformers.active == "default"
    assert alt.data_transformers.options.get("max_rows", 5000) == charts.MAX_ROWS


@pytest.mark.slow
@pytest.mark.parametrize("name", CHARTS)
def test_charts_of_an_empty_log_say_there_is_no_data(name: str) -> None:
    spec = getattr(charts, name)(EnvelopeLog()).to_dict()
    assert "no " in str(spec["datasets"])
    assert vlc.vegalite_to_png(spec).startswith(PNG)


@pytest.mark.slow
@pytest.mark.parametrize("name", CHARTS)
def test_charts_take_a_connection_or_replay_too(chaos_run: ChaosRun, name: str) -> None:
    from rtnb.client.replay import replay

    rep = replay(EnvelopeLog.read_parquet(chaos_run.path), speed=None)
    assert rep.wait(60)
    assert getattr(charts, name)(rep).to_dict() == getattr(charts, name)(rep.log).to_dict()
    with pytest.raises(TypeError, match="EnvelopeLog"):
        getattr(charts, name)(object())


def test_lag_bins_hold_the_exact_percentiles_of_their_envelopes(chaos_run: ChaosRun) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    win = data.window(log, None, None, 50)
    rows, width = data.lag_rows(log, win, budget=5_000)
    env = log.envelopes
    env = env[env["lag_ms"].notna() & ~env["outcome"].isin(["invalid", "gap_unrecoverable"])]
    start = (env["received_at"].astype("int64") // 10**9) + (
        env["received_at"].astype("int64") % 10**9
    ) / 1e9
    env = env.assign(bin=np.floor((start - win.origin) / width))
    checked = 0
    for _, row in rows.dropna(subset=["lag_ms"]).iterrows():
        t = (row["t"].value // 10**9) + (row["t"].value % 10**9) / 1e9
        mine = env[(env["topic"] == row["topic"]) & (env["bin"] == round((t - win.origin) / width))]
        q = 50 if row["stat"] == "p50" else 99
        assert row["lag_ms"] == pytest.approx(np.percentile(mine["lag_ms"], q))
        assert row["events"] == len(mine)
        checked += 1
    assert checked > 20


@pytest.mark.slow
def test_outcome_bins_count_every_envelope_in_the_window_once(million: EnvelopeLog) -> None:
    env = million.envelopes
    start, end = env["received_at"].iloc[100_000], env["received_at"].iloc[400_000]
    win = data.window(million, start, end, 200)
    rows = data.outcome_rows(million, win)
    assert rows["envelopes"].sum() == 300_001
    assert rows["t"].min() >= start.floor(f"{win.width}s") and rows["t"].max() <= end
    assert rows.groupby("outcome")["envelopes"].sum()["replayed"] > 0


def test_zooming_into_an_incident_shows_only_that_range(million: EnvelopeLog) -> None:
    incident = million.incidents().iloc[3]
    start = incident["start"] - np.timedelta64(30, "s")
    end = incident["end"] + np.timedelta64(30, "s")
    spec = charts.lag(million, start=start, end=end).to_dict()
    times = [r["t"] for rows in spec["datasets"].values() for r in rows if "t" in r]
    assert times and min(times) >= start.floor("1s").isoformat()[:19]
    with pytest.raises(ValueError, match="before start"):
        charts.lag(million, start=end, end=start)


def test_the_timeline_marks_every_reconnect_attempt_and_replay(chaos_run: ChaosRun) -> None:
    log = EnvelopeLog.read_parquet(chaos_run.path)
    win = data.window(log, None, None, 200)
    attempts = data.attempt_rows(log, win, budget=1_000)
    assert len(attempts) == chaos_run.live_summary["reconnects"]
    topics = data.topic_rows(log, win, budget=1_000)
    replaying = topics[topics["kind"] == "replaying"]
    assert replaying["events"].sum() == chaos_run.live_counts["replayed"]


def test_a_timeline_with_more_transitions_than_fit_shows_the_worst_state_per_bin() -> None:
    log = EnvelopeLog(state_capacity=20_000)
    statuses = ["subscribed", "degraded", "reconnecting", "connecting", "authenticated"]
    for i in range(12_000):
        log.append_state(
            1_000.0 + i * 0.01, statuses[i % 5], statuses[(i - 1) % 5], "flap", i, 0.01
        )
    spec = charts.timeline(log).to_dict()
    assert embedded_rows(spec) <= charts.MAX_ROWS
    kinds = {r["kind"] for rows in spec["datasets"].values() for r in rows if "kind" in r}
    assert kinds == {"reconnecting"}, "the worst state of every bin is shown"


def test_mutations_are_points_when_few_and_binned_when_many(million: EnvelopeLog) -> None:
    win = data.window(million, None, None, 200)
    points, width = data.mutation_rows(million, win, budget=5_000)
    assert width is None and len(points) == 3_000
    binned, width = data.mutation_rows(million, win, budget=100)
    assert width is not None and len(binned) <= 100
    assert binned["mutations"].sum() == 3_000
    assert not math.isnan(binned["latency_ms"].max())


def test_the_lag_legend_draws_a_solid_and_a_dashed_line_for_p50_and_p99() -> None:
    log = EnvelopeLog.read_parquet(SHIPPED_RECORDING)
    vega = vlc.vegalite_to_vega(charts.lag(log).to_dict())
    (dash,) = [leg for leg in vega["legends"] if "strokeDash" in leg]
    assert dash["symbolType"] == "stroke"
    symbols = dash.get("encode", {}).get("symbols", {}).get("update", {})
    assert symbols.get("stroke", {}).get("value") != "transparent", dash
    assert symbols.get("strokeWidth", {}).get("value", dash.get("symbolStrokeWidth")) != 0
