"""From a log to the small tables the charts draw (aggregated in pandas/numpy).

Every function returns at most the number of rows it is given as a budget, so
a chart of a 1,000,000-envelope log embeds a few thousand rows at most. The
columns read straight from the log's ring snapshots (no full DataFrame build).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from ..core.status import OUTCOME_CODES, OUTCOMES_BY_CODE, Outcome, Status
from ..telemetry.frames import ordered, seconds_to_utc
from ..telemetry.log import EnvelopeLog
from .binning import bin_index, clusters, group_quantiles, nice_bin

_NO_LAG: Final = (OUTCOME_CODES[Outcome.INVALID], OUTCOME_CODES[Outcome.GAP_UNRECOVERABLE])
#: Worst first: when many states share one pixel, the worst one is shown.
SEVERITY: Final = (
    Status.CLOSED.value,
    Status.RECONNECTING.value,
    Status.DEGRADED.value,
    Status.CONNECTING.value,
    Status.AUTHENTICATED.value,
    Status.SUBSCRIBED.value,
    Status.IDLE.value,
)


def as_log(source: Any) -> EnvelopeLog:
    """An ``EnvelopeLog``, or anything with one as ``.log`` (a connection, a replay)."""
    if isinstance(source, EnvelopeLog):
        return source
    log = getattr(source, "log", None)
    if isinstance(log, EnvelopeLog):
        return log
    raise TypeError(
        f"expected an rtnb.EnvelopeLog or a connection/replay with .log, got {type(source).__name__}"
    )


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    whole, ns = divmod(int(stamp.value), 1_000_000_000)
    return whole + ns / 1e9


def utc(seconds: Any) -> pd.DatetimeIndex:
    return seconds_to_utc(np.asarray(seconds, dtype=np.float64))


def clock(seconds: Any) -> list[str]:
    """``HH:MM:SS.mmm`` (UTC) labels for tooltips."""
    return [s[:-3] for s in utc(seconds).strftime("%H:%M:%S.%f")]


@dataclass(frozen=True, slots=True)
class Window:
    """The time range a chart shows and its bins."""

    t0: float
    t1: float
    width: float
    origin: float

    @property
    def nbins(self) -> int:
        return math.floor((self.t1 - self.origin) / self.width) + 1

    def contains(self, t: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        inside: np.ndarray[Any, Any] = np.logical_and(t >= self.t0, t <= self.t1)
        return inside


def _finite(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    kept: np.ndarray[Any, Any] = values[np.isfinite(values)]
    return kept


def window(log: EnvelopeLog, start: Any, end: Any, max_bins: int) -> Window:
    """The range to chart: ``start``/``end`` if given, else everything in the log."""
    times = [
        _finite(ordered(log.snapshot(table, (name,)), name))
        for table, name in (("envelopes", "received_at"), ("states", "at"), ("heartbeats", "at"))
    ]
    mutations = log.snapshot("mutations", ("created_at", "resolved_at"))
    times += [_finite(ordered(mutations, "created_at")), _finite(ordered(mutations, "resolved_at"))]
    present = [t for t in times if t.size]
    lo = min((float(t.min()) for t in present), default=0.0)
    hi = max((float(t.max()) for t in present), default=lo)
    t0 = _seconds(start) if start is not None else lo
    t1 = _seconds(end) if end is not None else hi
    assert t0 is not None and t1 is not None
    if t1 < t0:
        raise ValueError(f"end ({end}) is before start ({start})")
    width = nice_bin(t1 - t0, max_bins)
    return Window(t0, t1, width, math.floor(t0 / width) * width)


def _envelopes(log: EnvelopeLog, win: Window, *names: str) -> tuple[dict[str, Any], list[str]]:
    snap = log.snapshot("envelopes", ("received_at", *names))
    received = ordered(snap, "received_at")
    keep = win.contains(received)
    cols = {"received_at": received[keep]}
    cols.update({n: ordered(snap, n)[keep] for n in names})
    return cols, snap.categories.get("topic", [])


def lag_rows(log: EnvelopeLog, win: Window, budget: int) -> tuple[pd.DataFrame, float]:
    """Per topic and time bin: p50 and p99 of lag_ms. Returns (rows, bin width used)."""
    cols, topics = _envelopes(log, win, "occurred_at", "topic", "outcome")
    lag = (cols["received_at"] - cols["occurred_at"]) * 1000.0
    ok = np.isfinite(lag) & ~np.isin(cols["outcome"], _NO_LAG) & (cols["topic"] >= 0)
    codes = cols["topic"][ok]
    used = np.unique(codes)
    width, origin = win.width, win.origin
    per_series = max(1, budget // max(1, 4 * used.size))  # half the budget for line breaks
    if win.nbins > per_series:  # coarser bins so every series fits the budget
        width = nice_bin(win.t1 - win.t0, per_series)
        origin = math.floor(win.t0 / width) * width
    bins = bin_index(cols["received_at"][ok], origin, width)
    nb = int(bins.max()) + 2 if bins.size else 1
    rank = np.searchsorted(used, codes)
    ids, counts, qs = group_quantiles(rank * nb + bins, lag[ok], (0.5, 0.99))
    # A line must break where a series has no data (e.g. while disconnected):
    # a NaN row in the first empty bin after each run does that.
    ends = ids[~np.isin(ids + 1, ids) & ((ids % nb) + 1 < nb - 1)] + 1
    all_ids = np.concatenate([ids, ends])
    order = np.argsort(all_ids, kind="stable")
    all_ids = all_ids[order]
    p50 = np.concatenate([qs[:, 0], np.full(ends.size, np.nan)])[order]
    p99 = np.concatenate([qs[:, 1], np.full(ends.size, np.nan)])[order]
    events = np.concatenate([counts, np.zeros(ends.size, np.int64)])[order]
    topic = [topics[used[i // nb]] for i in all_ids.tolist()]
    t = origin + (all_ids % nb) * width
    frame = pd.DataFrame(
        {
            "t": np.concatenate([t, t]),
            "topic": topic + topic,
            "stat": ["p50"] * all_ids.size + ["p99"] * all_ids.size,
            "lag_ms": np.concatenate([p50, p99]),
            "events": np.concatenate([events, events]),
        }
    )
    frame["time"] = clock(frame["t"])
    frame["t"] = utc(frame["t"])
    return frame, width


def outcome_rows(log: EnvelopeLog, win: Window) -> pd.DataFrame:
    """Envelopes per time bin and outcome (outcomes that occur only)."""
    cols, _ = _envelopes(log, win, "outcome")
    bins = bin_index(cols["received_at"], win.origin, win.width)
    n_out = len(OUTCOMES_BY_CODE)
    counts = np.bincount(
        bins * n_out + cols["outcome"].astype(np.int64), minlength=win.nbins * n_out
    )
    nz = np.flatnonzero(counts)
    frame = pd.DataFrame(
        {
            "t": win.origin + (nz // n_out) * win.width,
            "outcome": [OUTCOMES_BY_CODE[k].value for k in (nz % n_out).tolist()],
            "envelopes": counts[nz],
        }
    )
    frame["time"] = clock(frame["t"])
    frame["t"] = utc(frame["t"])
    return frame


def state_rows(log: EnvelopeLog, win: Window, budget: int) -> pd.DataFrame:
    """The connection's states as intervals, clipped to the window (worst per pixel if many)."""
    snap = log.snapshot("states", ("at", "status", "reason", "attempt"))
    at = ordered(snap, "at")
    cats = snap.categories.get("status", [])
    status = [cats[c] if c >= 0 else "idle" for c in ordered(snap, "status").tolist()]
    rcats = snap.categories.get("reason", [])
    reason = [rcats[c] if c >= 0 else "" for c in ordered(snap, "reason").tolist()]
    attempt = ordered(snap, "attempt")
    ends = np.append(at[1:], max(win.t1, at[-1])) if at.size else at
    keep = (ends >= win.t0) & (at <= win.t1)
    idx = np.flatnonzero(keep)
    frame = pd.DataFrame(
        {
            "start": np.maximum(at[idx], win.t0),
            "end": np.minimum(ends[idx], win.t1),
            "kind": [status[i] for i in idx.tolist()],
            "reason": [reason[i] for i in idx.tolist()],
            "attempt": attempt[idx],
        }
    )
    if len(frame) > budget:
        frame = _worst_per_bin(frame, win, budget)
    frame["lane"] = "connection"
    frame["duration_s"] = frame["end"] - frame["start"]
    return frame


def _worst_per_bin(frame: pd.DataFrame, win: Window, budget: int) -> pd.DataFrame:
    """Too many intervals to draw: per bin, keep the worst status seen, merged into runs."""
    width = nice_bin(win.t1 - win.t0, budget)
    origin = math.floor(win.t0 / width) * width
    rank = frame["kind"].map({s: i for i, s in enumerate(SEVERITY)}).fillna(len(SEVERITY))
    first = bin_index(frame["start"].to_numpy(), origin, width)
    last = bin_index(frame["end"].to_numpy(), origin, width)
    nb = int(last.max()) + 1
    worst = np.full(nb, len(SEVERITY), dtype=np.int64)
    for a, b, r in zip(first.tolist(), last.tolist(), rank.astype(int).tolist(), strict=True):
        worst[a : b + 1] = np.minimum(worst[a : b + 1], r)
    change = np.flatnonzero(np.diff(worst)) + 1
    starts = np.concatenate(([0], change))
    stops = np.concatenate((change, [nb]))
    kinds = [SEVERITY[r] if r < len(SEVERITY) else "idle" for r in worst[starts].tolist()]
    return pd.DataFrame(
        {
            "start": np.maximum(origin + starts * width, win.t0),
            "end": np.minimum(origin + stops * width, win.t1),
            "kind": kinds,
            "reason": [f"worst state per {width:g} s (too many transitions to draw each)"]
            * len(kinds),
            "attempt": np.zeros(len(kinds), dtype=np.int64),
        }
    )


def topic_rows(log: EnvelopeLog, win: Window, budget: int) -> pd.DataFrame:
    """Per topic: runs of replayed events, open gaps (buffered) and unrecoverable ranges."""
    cols, topics = _envelopes(log, win, "topic", "outcome")
    join = max(win.width, 0.5)
    kinds = (
        (Outcome.BUFFERED, "gap open"),
        (Outcome.REPLAYED, "replaying"),
        (Outcome.GAP_UNRECOVERABLE, "unrecoverable"),
    )
    parts = []
    for code in np.unique(cols["topic"][cols["topic"] >= 0]).tolist():
        mine = cols["topic"] == code
        for outcome, kind in kinds:
            times = cols["received_at"][mine & (cols["outcome"] == OUTCOME_CODES[outcome])]
            starts, ends, counts = clusters(times, join)
            parts.append(
                pd.DataFrame(
                    {
                        "lane": topics[code],
                        "start": starts,
                        "end": ends,
                        "kind": kind,
                        "events": counts,
                    }
                )
            )
    frame = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"lane": [], "start": [], "end": [], "kind": [], "events": []})
    )
    if len(frame) > budget:  # keep the biggest runs
        frame = frame.nlargest(budget, "events").sort_values("start", ignore_index=True)
    # a run of one instant still gets a visible sliver
    frame["end"] = np.maximum(frame["end"], frame["start"] + win.width / 4)
    return frame


def degraded_rows(log: EnvelopeLog, win: Window, budget: int) -> pd.DataFrame:
    """Incidents clipped to the window (``end`` = now for an ongoing one)."""
    from ..telemetry.incidents import incidents

    inc = incidents(log)
    start = (inc["start"].astype("int64") / 1e9).to_numpy()
    end = start + inc["duration_s"].to_numpy()
    keep = (end >= win.t0) & (start <= win.t1)
    frame = pd.DataFrame(
        {
            "start": np.maximum(start[keep], win.t0),
            "end": np.minimum(end[keep], win.t1),
            "reason": inc["reason"][keep].to_numpy(),
            "outcome": inc["outcome"][keep].to_numpy(),
            "duration_s": inc["duration_s"][keep].to_numpy(),
            "events_missed": inc["events_missed"][keep].to_numpy(),
        }
    )
    if len(frame) > budget:
        frame = frame.nlargest(budget, "duration_s").sort_values("start", ignore_index=True)
    return frame


def attempt_rows(log: EnvelopeLog, win: Window, budget: int) -> pd.DataFrame:
    """Reconnect attempts: each transition into ``reconnecting``."""
    states = state_rows(log, Window(win.t0, win.t1, win.width, win.origin), budget=10**9)
    frame = states[states["kind"] == Status.RECONNECTING.value][["start", "attempt", "reason"]]
    frame = frame[frame["start"] > win.t0].rename(columns={"start": "t"})
    return frame.tail(budget).reset_index(drop=True)


def mutation_rows(log: EnvelopeLog, win: Window, budget: int) -> tuple[pd.DataFrame, float | None]:
    """Mutations as points (created time, latency, outcome); binned if more than ``budget``."""
    frame = log.mutations
    created = (frame["created_at"].astype("int64") / 1e9).to_numpy(dtype=np.float64)
    keep = win.contains(created)
    frame = frame[keep]
    created = created[keep]
    points = pd.DataFrame(
        {
            "t": created,
            "latency_ms": frame["latency_ms"].to_numpy(),
            "outcome": frame["outcome"].astype(str).to_numpy(),
            "topic": frame["topic"].astype(str).to_numpy(),
            "entity_id": frame["entity_id"].astype(str).to_numpy(),
            "while_degraded": frame["while_degraded"].to_numpy(),
            "mutations": np.ones(len(frame), dtype=np.int64),
        }
    )
    width: float | None = None
    if len(points) > budget:
        outcomes = sorted(set(points["outcome"]))
        per = max(1, budget // max(1, len(outcomes)))
        width = nice_bin(win.t1 - win.t0, per)
        origin = math.floor(win.t0 / width) * width
        bins = bin_index(points["t"].to_numpy(), origin, width)
        nb = int(bins.max()) + 1
        oc = points["outcome"].map({o: i for i, o in enumerate(outcomes)}).to_numpy()
        lat = points["latency_ms"].to_numpy()
        finite = np.isfinite(lat)
        ids, counts, qs = group_quantiles((oc * nb + bins)[finite], lat[finite], (0.5,))
        points = pd.DataFrame(
            {
                "t": origin + (ids % nb + 0.5) * width,
                "latency_ms": qs[:, 0],
                "outcome": [outcomes[i // nb] for i in ids.tolist()],
                "mutations": counts,
            }
        )
    points["time"] = clock(points["t"])
    points["t"] = utc(points["t"])
    return points, width
