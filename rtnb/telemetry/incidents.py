"""``log.incidents()``: the periods when the connection was not delivering live data.

An *incident* starts when the connection enters ``degraded`` or
``reconnecting`` and ends when it is ``subscribed`` again (``recovered``), or
``closed`` (``closed``); one still open when the log ends is ``ongoing`` and
its duration runs to the newest time in the log (:func:`newest_time`).
Incident time therefore includes the ``connecting`` and ``authenticated``
steps of the recovery. This is rtnb's one definition of *degraded time*:
``summary()["degraded_s"]`` is exactly the sum of the incidents' durations
(kept as a running tally, so it stays right after the ring overflows).

Events are attributed to an incident by when they were *received*: from its
start until ``recovery_window`` seconds after its end (the replay that
closes a gap arrives right after the re-subscription), and never past the
next incident's start.

``events_replayed``
    envelopes logged ``replayed``: missed live, delivered by the server's replay.
``events_unrecoverable``
    ``gap_unrecoverable`` sequences: missed and never delivered (a snapshot
    replaced the state instead).
``events_missed``
    their sum: every event the live stream did not deliver during the incident.

:func:`periods` is the pure core (statuses in, periods out), tested with
hypothesis; :func:`incidents` builds the DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from ..core.status import OUTCOME_CODES, Outcome, Status
from .frames import ordered, seconds_to_utc

if TYPE_CHECKING:
    from .log import EnvelopeLog

#: Seconds after an incident's end during which replayed events still count for it: 5.
RECOVERY_WINDOW: Final = 5.0
#: Statuses that start an incident.
DEGRADED: Final = frozenset({Status.DEGRADED.value, Status.RECONNECTING.value})
#: Statuses that end one, and what the ending is called.
ENDINGS: Final = {Status.SUBSCRIBED.value: "recovered", Status.CLOSED.value: "closed"}
COLUMNS: Final = (
    "start",
    "end",
    "duration_s",
    "outcome",
    "reason",
    "attempts",
    "events_missed",
    "events_replayed",
    "events_unrecoverable",
)


@dataclass(frozen=True, slots=True)
class Period:
    """One incident, by state-row index: rows ``first`` .. ``last`` (``last`` None: ongoing)."""

    first: int
    last: int | None
    outcome: str  # "recovered" | "closed" | "ongoing"
    attempts: int


def periods(statuses: Sequence[str | None]) -> list[Period]:
    """The incidents in a sequence of connection statuses (in time order)."""
    out: list[Period] = []
    first: int | None = None
    attempts = 0
    for i, status in enumerate(statuses):
        if first is None:
            if status in DEGRADED:
                first, attempts = i, int(status == Status.RECONNECTING.value)
            continue
        if status == Status.RECONNECTING.value:
            attempts += 1
        elif status in ENDINGS:
            out.append(Period(first, i, ENDINGS[status], attempts))
            first = None
    if first is not None:
        out.append(Period(first, None, "ongoing", attempts))
    return out


def incident_seconds(
    at: Sequence[float], statuses: Sequence[str | None]
) -> tuple[float, float | None]:
    """Seconds of the *finished* incidents in a status sequence, and the start of
    the open one (None if none is open): the pure core of degraded time."""
    total = 0.0
    since: float | None = None
    for p in periods(statuses):
        if p.last is None:
            since = float(at[p.first])
        else:
            total += float(at[p.last]) - float(at[p.first])
    return total, since


def degraded_time(log: EnvelopeLog, until: float | None = None) -> tuple[float, bool]:
    """Degraded seconds in ``log``, and whether an incident is still open.

    The one definition, read by ``log.summary()``, ``log.incidents()`` (the
    sum of its durations), the Dashboard's "degraded s" counter and the charts'
    shaded periods: from entering ``degraded`` or ``reconnecting`` until
    ``subscribed`` (or ``closed``) again, recovery steps included. An open
    incident runs to ``until`` — a live view passes the wall clock — or, by
    default, to the newest time in the log (a saved file reads the same
    tomorrow). Cheap: the log keeps the finished incidents as a running tally.
    """
    states = log.snapshot("states", ("at", "status"))
    total = states.tally.get("incident_s")
    since = states.tally.get("incident_since")
    if total is None:  # a file from before the tally: recompute from the rows held
        names = states.categories["status"]
        total, since = incident_seconds(
            ordered(states, "at").tolist(),
            [names[int(c)] if int(c) >= 0 else None for c in ordered(states, "status")],
        )
    seconds = float(total)
    if since is not None:
        end = newest_time(log) if until is None else until
        seconds += max(end, since) - since
    return seconds, since is not None


def newest_time(log: EnvelopeLog) -> float:
    """The newest time recorded anywhere in the log (received envelopes, state
    changes, heartbeats): where an ongoing incident's duration stops, so a
    saved file summarises the same way tomorrow (never the wall clock)."""
    latest = -math.inf
    for table, name in (("envelopes", "received_at"), ("states", "at"), ("heartbeats", "at")):
        values = ordered(log.snapshot(table, (name,)), name)
        finite = values[np.isfinite(values)]
        if finite.size:
            latest = max(latest, float(finite.max()))
    return latest


def _count_between(sorted_times: np.ndarray[Any, Any], lo: float, hi: float) -> int:
    a, b = np.searchsorted(sorted_times, [lo, hi], side="left")
    return int(b - a)


def incidents(log: EnvelopeLog, *, recovery_window: float = RECOVERY_WINDOW) -> pd.DataFrame:
    """One row per incident (columns :data:`COLUMNS`), oldest first."""
    states = log.states
    found = periods(states["status"].astype(object).where(states["status"].notna(), None).tolist())
    env = log.snapshot("envelopes", ("received_at", "outcome", "count"))
    received = ordered(env, "received_at")
    outcome = ordered(env, "outcome")
    replayed = np.sort(received[outcome == OUTCOME_CODES[Outcome.REPLAYED]])
    gap_rows = outcome == OUTCOME_CODES[Outcome.GAP_UNRECOVERABLE]
    lost_order = np.argsort(received[gap_rows], kind="stable")
    lost = received[gap_rows][lost_order]
    # a gap row is a range of ``count`` sequences: sum counts, not rows
    lost_sizes = np.cumsum(np.concatenate(([0], ordered(env, "count")[gap_rows][lost_order])))
    at = (states["at"].astype("int64") / 1e9).to_numpy() if len(states) else np.empty(0)
    newest = newest_time(log) if found and found[-1].last is None else math.inf
    rows: list[dict[str, Any]] = []
    for k, p in enumerate(found):
        start = float(at[p.first])
        end = float(at[p.last]) if p.last is not None else math.nan
        horizon = (end + recovery_window) if p.last is not None else math.inf
        if k + 1 < len(found):
            horizon = min(horizon, float(at[found[k + 1].first]))
        n_replayed = _count_between(replayed, start, horizon)
        a, b = np.searchsorted(lost, [start, horizon], side="left")
        n_lost = int(lost_sizes[b] - lost_sizes[a])
        stop = end if p.last is not None else max(newest, start)
        rows.append(
            {
                "start": start,
                "end": end,
                "duration_s": stop - start,
                "outcome": p.outcome,
                "reason": states["reason"].iloc[p.first],
                "attempts": p.attempts,
                "events_missed": n_replayed + n_lost,
                "events_replayed": n_replayed,
                "events_unrecoverable": n_lost,
            }
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("start", "end"):
        frame[col] = seconds_to_utc(frame[col].to_numpy(dtype=np.float64))
    for col in ("attempts", "events_missed", "events_replayed", "events_unrecoverable"):
        frame[col] = frame[col].astype(np.int64)
    frame["duration_s"] = frame["duration_s"].astype(np.float64)
    frame["outcome"] = frame["outcome"].astype(object).astype("str")
    frame["reason"] = frame["reason"].astype("str")
    return frame
