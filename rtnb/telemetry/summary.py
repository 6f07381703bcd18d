"""``EnvelopeLog.summary()``: headline figures as plain, JSON-friendly Python values.

Keys of the returned dict:

``envelopes_total`` / ``envelopes_held``
    Envelopes ever appended / still in the ring.
``outcomes``
    Envelopes per outcome (every :class:`rtnb.Outcome`, zeros included), over
    *all* envelopes ever appended, so the figures stay honest after overflow.
``lag_ms``
    ``{"p50", "p95", "p99", "count"}``: receive lag percentiles (numpy's
    default linear interpolation) over the *held* envelopes with a finite lag,
    whatever their outcome; ``None`` when there are none.
``reconnects``
    Transitions into ``reconnecting`` (one per reconnect attempt), ever.
``degraded_s`` / ``degraded_ongoing``
    Seconds spent in ``degraded`` or ``reconnecting``: the ``duration_s`` of
    every transition out of those states, ever, plus -- if the newest state is
    one of them -- the ongoing period up to the newest time recorded anywhere
    in the log (not the wall clock, so a summary is reproducible from a saved
    file). ``degraded_ongoing`` says whether that last part was included.
``replay``
    ``{"replayed", "gap_unrecoverable"}`` envelope counts.
``validation_failures``
    ``invalid`` envelopes.
``mutations``
    Mutations per outcome, ever (sorted by outcome).
``dropped``
    Rows overwritten by overflow, per table. Non-zero means the DataFrames no
    longer hold everything; the counts above still do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.status import Outcome, Status
from .frames import ordered
from .ring import Snapshot

if TYPE_CHECKING:
    from .log import EnvelopeLog

#: States counted as degraded time.
DEGRADED_STATUSES = (Status.DEGRADED.value, Status.RECONNECTING.value)
#: Lag percentiles reported.
LAG_PERCENTILES = (50, 95, 99)


def _newest(snap: Snapshot, name: str) -> float:
    """Value of column ``name`` in the newest row (NaN if the table is empty)."""
    if not snap.held:
        return float("nan")
    index = (snap.start or snap.held) - 1
    value = snap.columns[name][index]
    return float(value)


def summarize(log: EnvelopeLog) -> dict[str, Any]:
    env = log._snapshot("envelopes", ("received_at", "occurred_at"))
    states = log._snapshot("states", ("at", "status"))
    mutations = log._snapshot("mutations", ("created_at", "resolved_at"))
    heartbeats = log._snapshot("heartbeats", ("at",))

    outcomes: dict[str, int] = env.tally["outcomes"]
    lag = (ordered(env, "received_at") - ordered(env, "occurred_at")) * 1000.0
    lag = lag[np.isfinite(lag)]
    lag_ms: dict[str, Any] = {f"p{p}": None for p in LAG_PERCENTILES}
    if lag.size:
        figures = np.percentile(lag, LAG_PERCENTILES)
        lag_ms = {f"p{p}": float(v) for p, v in zip(LAG_PERCENTILES, figures, strict=True)}
    lag_ms["count"] = int(lag.size)

    entries: dict[str, int] = states.tally["entries"]
    seconds: dict[str, float] = states.tally["seconds"]
    degraded_s = sum(seconds.get(s, 0.0) for s in DEGRADED_STATUSES)
    ongoing = False
    if states.held:
        code = int(_newest(states, "status"))
        last_status = states.categories["status"][code] if code >= 0 else None
        if last_status in DEGRADED_STATUSES:
            since = _newest(states, "at")
            times = [
                _newest(env, "received_at"),
                since,
                _newest(mutations, "created_at"),
                _newest(mutations, "resolved_at"),
                _newest(heartbeats, "at"),
            ]
            latest = max((t for t in times if np.isfinite(t)), default=since)
            if np.isfinite(since) and latest > since:
                degraded_s += latest - since
            ongoing = True

    return {
        "envelopes_total": env.total,
        "envelopes_held": env.held,
        "outcomes": dict(outcomes),
        "lag_ms": lag_ms,
        "reconnects": int(entries.get(Status.RECONNECTING.value, 0)),
        "degraded_s": float(degraded_s),
        "degraded_ongoing": ongoing,
        "replay": {
            "replayed": outcomes[Outcome.REPLAYED.value],
            "gap_unrecoverable": outcomes[Outcome.GAP_UNRECOVERABLE.value],
        },
        "validation_failures": outcomes[Outcome.INVALID.value],
        "mutations": dict(sorted(mutations.tally["outcomes"].items())),
        "dropped": {s.spec.name: s.dropped for s in (env, states, mutations, heartbeats)},
    }
