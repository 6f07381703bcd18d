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
    Degraded time, one definition with ``log.incidents()``: from leaving live
    (entering ``degraded`` or ``reconnecting``) until ``subscribed`` again
    (or ``closed``), recovery steps (``connecting``, ``authenticated``)
    included. It is the sum of ``log.incidents()["duration_s"]``: every
    finished incident, ever (a running tally, right after overflow too), plus
    the ongoing one up to the newest time recorded anywhere in the log (not
    the wall clock, so a summary is reproducible from a saved file).
    ``degraded_ongoing`` says whether an incident is still open.
``replay``
    ``{"replayed", "gap_unrecoverable"}``: events replayed, and *sequences*
    lost for good (a ``gap_unrecoverable`` row stands for a range of
    ``count`` sequences, so this is the sum of ``count``, not of rows;
    ``outcomes`` counts rows).
``validation_failures``
    ``invalid`` envelopes.
``mutations``
    Mutations per outcome, ever (sorted by outcome).
``dropped``
    Rows overwritten by overflow, per table. Non-zero means the DataFrames no
    longer hold everything; the counts above still do.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.status import Outcome, Status
from .frames import ordered
from .incidents import degraded_time

if TYPE_CHECKING:
    from .log import EnvelopeLog

#: States that start degraded time (it ends at ``subscribed`` or ``closed``).
DEGRADED_STATUSES = (Status.DEGRADED.value, Status.RECONNECTING.value)
#: Lag percentiles reported.
LAG_PERCENTILES = (50, 95, 99)


class Summary(dict[str, Any]):
    """The summary dict; in a notebook it shows as a small table (``_repr_html_``)."""

    def _rows(self) -> list[tuple[str, str]]:
        outcomes = {k: v for k, v in self.get("outcomes", {}).items() if v}
        lag = self.get("lag_ms", {})
        mutations = self.get("mutations", {})
        dropped = {k: v for k, v in self.get("dropped", {}).items() if v}
        degraded = f"{self.get('degraded_s', 0.0):.1f} s"
        if self.get("degraded_ongoing"):
            degraded += " (ongoing)"

        def ms(v: Any) -> str:
            return "–" if v is None else f"{v:,.1f} ms"

        def listing(d: dict[str, Any]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "none"

        return [
            (
                "envelopes",
                f"{self.get('envelopes_total', 0):,} ({self.get('envelopes_held', 0):,} held)",
            ),
            ("outcomes", listing(outcomes)),
            ("lag p50 / p95 / p99", " / ".join(ms(lag.get(p)) for p in ("p50", "p95", "p99"))),
            ("reconnects", f"{self.get('reconnects', 0):,}"),
            ("degraded", degraded),
            (
                "replayed / unrecoverable",
                "{replayed:,} / {gap_unrecoverable:,}".format(
                    **self.get("replay", {"replayed": 0, "gap_unrecoverable": 0})
                ),
            ),
            ("validation failures", f"{self.get('validation_failures', 0):,}"),
            ("mutations", listing(mutations)),
            ("dropped by overflow", listing(dropped)),
        ]

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th style='text-align:left;padding:2px 12px 2px 0;font-weight:600'>"
            f"{html.escape(k)}</th><td style='text-align:left;padding:2px 0'>{html.escape(v)}</td></tr>"
            for k, v in self._rows()
        )
        return (
            "<table class='rtnb-summary' style='border-collapse:collapse;"
            "font-variant-numeric:tabular-nums'>"
            f"<caption style='text-align:left;font-weight:600;padding-bottom:4px'>rtnb log summary"
            f"</caption>{cells}</table>"
        )

    def __str__(self) -> str:
        width = max(len(k) for k, _ in self._rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self._rows())


def summarize(log: EnvelopeLog) -> Summary:
    env = log.snapshot("envelopes", ("received_at", "occurred_at"))
    states = log.snapshot("states", ("at", "status"))
    mutations = log.snapshot("mutations", ("created_at", "resolved_at"))
    heartbeats = log.snapshot("heartbeats", ("at",))

    outcomes: dict[str, int] = env.tally["outcomes"]
    lag = (ordered(env, "received_at") - ordered(env, "occurred_at")) * 1000.0
    lag = lag[np.isfinite(lag)]
    lag_ms: dict[str, Any] = {f"p{p}": None for p in LAG_PERCENTILES}
    if lag.size:
        figures = np.percentile(lag, LAG_PERCENTILES)
        lag_ms = {f"p{p}": float(v) for p, v in zip(LAG_PERCENTILES, figures, strict=True)}
    lag_ms["count"] = int(lag.size)

    entries: dict[str, int] = states.tally["entries"]
    degraded_s, ongoing = degraded_time(log)

    return Summary(
        {
            "envelopes_total": env.total,
            "envelopes_held": env.held,
            "outcomes": dict(outcomes),
            "lag_ms": lag_ms,
            "reconnects": int(entries.get(Status.RECONNECTING.value, 0)),
            "degraded_s": float(degraded_s),
            "degraded_ongoing": ongoing,
            "replay": {
                "replayed": outcomes[Outcome.REPLAYED.value],
                "gap_unrecoverable": int(env.tally["gap_sequences"]),
            },
            "validation_failures": outcomes[Outcome.INVALID.value],
            "mutations": dict(sorted(mutations.tally["outcomes"].items())),
            "dropped": {s.spec.name: s.dropped for s in (env, states, mutations, heartbeats)},
        }
    )
