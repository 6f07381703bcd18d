"""The four charts as altair specs (Vega-Lite), built from :mod:`.data`'s small tables.

Every chart embeds at most :data:`MAX_ROWS` rows in total -- altair's own
default limit (``alt.data_transformers`` ``max_rows=5000``), which is left
on deliberately: the data is aggregated to fit it, so a chart that would
exceed it is a bug here, not something to disable. Times are shown in UTC.
"""

from __future__ import annotations

from typing import Any, Final

import altair as alt
import pandas as pd

from ..core.status import OUTCOMES_BY_CODE
from . import data
from .binning import label

#: Rows embedded in one chart at most (altair's default max_rows): 5,000.
MAX_ROWS: Final = 5_000
#: Time bins of the lag and outcomes charts at most: 200.
MAX_BINS: Final = 200
#: Default chart width in pixels: 720.
WIDTH: Final = 720
#: Default height of one chart panel in pixels: 220.
HEIGHT: Final = 220

OUTCOME_COLORS: Final = {
    "applied": "#4c78a8",
    "replayed": "#72b7b2",
    "buffered": "#eeca3b",
    "duplicate": "#b279a2",
    "stale": "#9d755d",
    "invalid": "#e45756",
    "unexpected_topic": "#ff9da6",
    "gap_unrecoverable": "#5a1a14",
}
STATUS_COLORS: Final = {
    "subscribed": "#54a24b",
    "authenticated": "#a5d99a",
    "connecting": "#9ecae9",
    "idle": "#d8d8d8",
    "degraded": "#f58518",
    "reconnecting": "#e45756",
    "closed": "#79706e",
}
ACTIVITY_COLORS: Final = {"gap open": "#eeca3b", "replaying": "#72b7b2", "unrecoverable": "#5a1a14"}
MUTATION_COLORS: Final = {
    "confirmed": "#54a24b",
    "rejected": "#e45756",
    "timed_out": "#f58518",
    "queued": "#9ecae9",
    "refused": "#79706e",
    "late_confirmation": "#b279a2",
    "cancelled": "#bab0ac",
}
_SHADE: Final = "#f58518"
_UTC = alt.Scale(type="utc")
#: What every chart function returns: an altair top-level chart (layer, hconcat or plain).
Chart = alt.TopLevelMixin


def _x(field: str = "t", title: str = "time (UTC)") -> alt.X:
    return alt.X(
        f"{field}:T", scale=_UTC, title=title, axis=alt.Axis(format="%H:%M:%S", labelOverlap=True)
    )


def _scale(colors: dict[str, str], present: list[str]) -> alt.Scale:
    domain = [k for k in colors if k in present] + sorted(set(present) - set(colors))
    return alt.Scale(domain=domain, range=[colors.get(k, "#bab0ac") for k in domain])


def _check(frames: list[pd.DataFrame]) -> None:
    total = sum(len(f) for f in frames)
    assert total <= MAX_ROWS, f"chart would embed {total} rows (> {MAX_ROWS}); aggregate more"


def _decades(top: float) -> list[float]:
    """Axis ticks for a symlog scale: 0, 1, 10, 100, ... up to ``top``."""
    ticks = [0.0, 1.0]
    while ticks[-1] < top:
        ticks.append(ticks[-1] * 10)
    return ticks


def _count_axis(top: int) -> alt.Axis:
    """Whole-number ticks (a count of 1 must not read 0, 0.5, 1)."""
    if top <= 10:
        return alt.Axis(format="d", values=list(range(top + 1)))
    return alt.Axis(format=",d", tickMinStep=1)


def _empty(title: str, message: str, width: int, height: int) -> Chart:
    frame = pd.DataFrame({"text": [message]})
    chart: Chart = (
        alt.Chart(frame, title=title)
        .mark_text(color="#79706e", fontSize=13)
        .encode(text="text:N")
        .properties(width=width, height=height)
    )
    return chart


def _min_span(win: data.Window, width: int, pixels: float = 3.0) -> float:
    """Seconds that ``pixels`` pixels cover: short incidents are widened to stay visible."""
    return (win.t1 - win.t0) / max(1, width) * pixels


def _shading(frame: pd.DataFrame, min_span: float) -> Any:
    end = frame["end"].clip(lower=frame["start"] + min_span)
    shade = frame.assign(start=data.utc(frame["start"]), end=data.utc(end))
    shade["from"] = data.clock(frame["start"])
    return (
        alt.Chart(shade)
        .mark_rect(color=_SHADE, opacity=0.2)
        .encode(
            x=_x("start"),
            x2="end:T",
            tooltip=[
                alt.Tooltip("from:N", title="degraded from"),
                alt.Tooltip("duration_s:Q", title="seconds", format=".1f"),
                alt.Tooltip("reason:N"),
                alt.Tooltip("events_missed:Q", title="events missed"),
            ],
        )
    )


def lag(
    source: Any, *, start: Any = None, end: Any = None, max_bins: int = MAX_BINS,
    width: int = WIDTH, height: int = HEIGHT,
) -> Chart:  # fmt: skip
    """Receive lag per topic over time: p50 and p99 per time bin, degraded periods shaded."""
    log = data.as_log(source)
    win = data.window(log, start, end, max_bins)
    shade = data.degraded_rows(log, win, budget=MAX_ROWS // 10)
    rows, bin_width = data.lag_rows(log, win, budget=MAX_ROWS - len(shade))
    title = alt.TitleParams(
        "Receive lag per topic",
        subtitle=f"p50 (solid) and p99 (dashed) per {label(bin_width)}; degraded periods shaded",
    )
    if rows.empty:
        return _empty(
            "Receive lag per topic", "no envelopes with a lag in this range", width, height
        )
    _check([rows, shade])
    encoding: dict[str, Any] = {
        "x": _x(),
        "y": alt.Y(
            "lag_ms:Q",
            title="lag (ms)",
            scale=alt.Scale(type="symlog"),
            axis=alt.Axis(values=_decades(rows["lag_ms"].max()), format=",d"),
        ),
        "color": alt.Color("topic:N", title="topic"),
        "detail": "stat:N",
        "tooltip": [
            alt.Tooltip("time:N", title="bin from"),
            "topic:N",
            "stat:N",
            alt.Tooltip("lag_ms:Q", title="lag ms", format=",.1f"),
            alt.Tooltip("events:Q", format=","),
        ],
    }
    # The points are a layer of their own: as the line's `point` overlay (filled) they made
    # the p50/p99 legend draw its stroke symbols transparent, so it showed no line.
    lines = (
        alt.Chart(rows)
        .mark_line(interpolate="step-after", strokeWidth=1.5, invalid="break-paths-show-domains")
        .encode(
            strokeDash=alt.StrokeDash(
                "stat:N",
                title="",
                scale=alt.Scale(domain=["p50", "p99"], range=[[1, 0], [4, 3]]),
                legend=alt.Legend(
                    symbolType="stroke", symbolStrokeWidth=2, symbolStrokeColor="#555"
                ),
            ),
            **encoding,
        )
    )
    points = (
        alt.Chart(rows)
        .mark_point(size=6, filled=True, opacity=1, invalid="filter")
        .encode(**encoding)
    )
    layers = [lines, points]
    if len(shade):
        layers.insert(0, _shading(shade, _min_span(win, width)))
    return alt.layer(*layers, title=title).properties(width=width, height=height)


def outcomes(
    source: Any, *, start: Any = None, end: Any = None, max_bins: int = MAX_BINS,
    width: int = WIDTH, height: int = HEIGHT,
) -> Chart:  # fmt: skip
    """Envelopes per outcome over time (stacked per time bin), degraded periods shaded."""
    log = data.as_log(source)
    n_out = len(OUTCOMES_BY_CODE)
    win = data.window(log, start, end, min(max_bins, MAX_ROWS // (n_out + 1)))
    rows = data.outcome_rows(log, win)
    shade = data.degraded_rows(log, win, budget=MAX_ROWS - len(rows))
    if rows.empty:
        return _empty("Envelope outcomes", "no envelopes in this range", width, height)
    _check([rows, shade])
    order = [o.value for o in OUTCOMES_BY_CODE]
    # Stack here, in outcome order, so every bar spans exactly its bin.
    rows = rows.assign(rank=rows["outcome"].map(order.index)).sort_values(["t", "rank"])
    rows["top"] = rows.groupby("t")["envelopes"].cumsum()
    rows["bottom"] = rows["top"] - rows["envelopes"]
    rows["t_end"] = rows["t"] + pd.Timedelta(seconds=win.width)
    bars = (
        alt.Chart(rows)
        .mark_rect()
        .encode(
            x=_x(),
            x2="t_end:T",
            y=alt.Y("bottom:Q", title=f"envelopes per {label(win.width)}"),
            y2="top:Q",
            color=alt.Color(
                "outcome:N", scale=_scale(OUTCOME_COLORS, list(rows["outcome"])), sort=order
            ),
            tooltip=[
                alt.Tooltip("time:N", title="bin from"),
                "outcome:N",
                alt.Tooltip("envelopes:Q", format=","),
            ],
        )
    )
    layers = [_shading(shade, _min_span(win, width)), bars] if len(shade) else [bars]
    title = alt.TitleParams(
        "Envelope outcomes", subtitle=f"per {label(win.width)}; degraded periods shaded"
    )
    return alt.layer(*layers, title=title).properties(width=width, height=height)


def timeline(
    source: Any, *, start: Any = None, end: Any = None, width: int = WIDTH, height: int | None = None,
) -> Chart:  # fmt: skip
    """Connection states as a band, topic replays / gaps / unrecoverable ranges, reconnect attempts."""
    log = data.as_log(source)
    win = data.window(log, start, end, MAX_BINS)
    states = data.state_rows(log, win, budget=MAX_ROWS // 2)
    attempts = data.attempt_rows(log, win, budget=MAX_ROWS // 10)
    topics = data.topic_rows(log, win, budget=MAX_ROWS - len(states) - len(attempts))
    if states.empty and topics.empty:
        return _empty("Connection timeline", "no states or envelopes in this range", width, 80)
    _check([states, topics, attempts])
    lanes = ["connection", *sorted(set(topics["lane"]))]
    # Short bad states stay visible (3 px), drawn over the good ones.
    bad = ~states["kind"].isin(["subscribed", "idle"])
    states.loc[bad, "end"] = states.loc[bad, "end"].clip(
        lower=states.loc[bad, "start"] + _min_span(win, width)
    )
    states = (
        states.assign(drawn=bad.astype(int))
        .sort_values("drawn", kind="stable")
        .drop(columns="drawn")
    )
    bands = pd.concat([states, topics], ignore_index=True)
    bands["from"] = data.clock(bands["start"])
    bands = bands.assign(start=data.utc(bands["start"]), end=data.utc(bands["end"]))
    kinds = list(bands["kind"])
    colors = {**STATUS_COLORS, **ACTIVITY_COLORS}
    y = alt.Y("lane:N", sort=lanes, title=None, axis=alt.Axis(labelFontWeight="bold"))
    band = (
        alt.Chart(bands)
        .mark_bar(height={"band": 0.7})
        .encode(
            x=_x("start"),
            x2="end:T",
            y=y,
            color=alt.Color("kind:N", title="state / activity", scale=_scale(colors, kinds)),
            tooltip=[
                "lane:N",
                "kind:N",
                alt.Tooltip("from:N", title="from"),
                alt.Tooltip("duration_s:Q", title="seconds", format=".2f"),
                "reason:N",
                "attempt:Q",
                alt.Tooltip("events:Q", title="events"),
            ],
        )
        .transform_calculate(duration_s="(toDate(datum.end) - toDate(datum.start)) / 1000")
    )
    layers: list[alt.Chart] = [band]
    if len(attempts):
        ticks = attempts.assign(
            lane="connection", time=data.clock(attempts["t"]), t=data.utc(attempts["t"])
        )
        layers.append(
            alt.Chart(ticks)
            .mark_tick(color="#222", thickness=2, size=22)
            .encode(
                x=_x(),
                y=y,
                tooltip=[alt.Tooltip("time:N", title="reconnect at"), "attempt:Q", "reason:N"],
            )
        )
    title = alt.TitleParams(
        "Connection timeline",
        subtitle="connection states; per topic: open gaps, replays, unrecoverable ranges; ticks = reconnect attempts",
    )
    chart_height = height if height is not None else 34 * len(lanes) + 20
    return alt.layer(*layers, title=title).properties(width=width, height=chart_height)


def mutations(
    source: Any, *, start: Any = None, end: Any = None, width: int = WIDTH, height: int = HEIGHT,
) -> Chart:  # fmt: skip
    """Mutation latency over time by outcome, beside the count per outcome."""
    log = data.as_log(source)
    win = data.window(log, start, end, MAX_BINS)
    points, bin_width = data.mutation_rows(log, win, budget=MAX_ROWS - 20)
    if points.empty:
        return _empty("Mutations", "no mutations in this range", width, height)
    counts = pd.DataFrame(points.groupby("outcome", as_index=False)["mutations"].sum())
    _check([points, counts])
    color = alt.Color("outcome:N", scale=_scale(MUTATION_COLORS, list(counts["outcome"])))
    subtitle = (
        "one point per mutation"
        if bin_width is None
        else f"median per {label(bin_width)} (size = count)"
    )
    tooltip = [
        alt.Tooltip("time:N", title="created"),
        "outcome:N",
        alt.Tooltip("latency_ms:Q", format=",.1f"),
    ]
    if bin_width is None:
        tooltip += ["topic:N", "entity_id:N", "while_degraded:N"]
    else:
        tooltip += [alt.Tooltip("mutations:Q", format=",")]
    scatter = (
        alt.Chart(points, title=alt.TitleParams("Mutation latency", subtitle=subtitle))
        .mark_point(filled=True, opacity=0.7)
        .encode(
            x=_x(),
            y=alt.Y(
                "latency_ms:Q",
                title="latency (ms)",
                scale=alt.Scale(type="symlog"),
                axis=alt.Axis(values=_decades(points["latency_ms"].max()), format=",d"),
            ),
            color=color,
            size=(
                alt.value(50)
                if bin_width is None
                else alt.Size("mutations:Q", legend=None, scale=alt.Scale(range=[30, 300]))
            ),
            tooltip=tooltip,
        )
        .properties(width=int(width * 0.72), height=height)
    )
    bars = (
        alt.Chart(counts, title="By outcome")
        .mark_bar()
        .encode(
            x=alt.X(
                "mutations:Q", title="mutations", axis=_count_axis(int(counts["mutations"].max()))
            ),
            y=alt.Y("outcome:N", sort="-x", title=None),
            color=alt.Color(
                "outcome:N", scale=_scale(MUTATION_COLORS, list(counts["outcome"])), legend=None
            ),
            tooltip=["outcome:N", alt.Tooltip("mutations:Q", format=",")],
        )
        .properties(width=int(width * 0.18), height=height)
    )
    return alt.hconcat(scatter, bars)
