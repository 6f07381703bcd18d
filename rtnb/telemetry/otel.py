"""OpenTelemetry export of an :class:`~rtnb.telemetry.EnvelopeLog` (extra ``rtnb[otel]``).

Follows the OpenTelemetry messaging semantic conventions (development status,
as of semconv 1.27+); rtnb-specific fields live under ``messaging.rtnb.*``:

Envelopes
    One span per envelope row, kind ``CONSUMER``, named ``receive {topic}``,
    starting and ending at ``received_at`` (the receive operation; the time in
    flight is ``messaging.rtnb.lag``, in seconds like every duration in the
    conventions). Attributes: ``messaging.system`` = ``rtnb``,
    ``messaging.operation.type`` / ``messaging.operation.name`` = ``receive``,
    ``messaging.destination.name`` (topic), ``messaging.message.id`` (when the
    envelope had one), ``messaging.message.body.size`` (frame bytes), and
    ``messaging.rtnb.{sequence,outcome,event_type,entity_id,transport,
    connection_attempt,count,lag}``. Outcomes that are failures (``invalid``,
    ``unexpected_topic``, ``gap_unrecoverable``) set ``error.type`` to the
    outcome and the span status to ERROR. The ``InvalidFrame`` text is never
    exported (it may quote a hostile frame).
Mutations
    One span per mutation, kind ``PRODUCER``, named ``mutate {topic}``, from
    ``created_at`` to ``resolved_at``; ``messaging.operation.type`` = ``send``,
    ``messaging.message.id`` = the client mutation id,
    ``messaging.rtnb.mutation.{outcome,while_degraded}``; any outcome but
    ``confirmed`` sets ``error.type``.
Incidents
    One ``INTERNAL`` span per incident (the periods of ``log.incidents()``:
    degraded/reconnecting until subscribed or closed), named ``rtnb incident``,
    with every state transition inside it as a span event
    ``rtnb.state.transition``; the one-shot export adds the events
    missed/replayed/unrecoverable.
Metrics
    ``messaging.client.consumed.messages`` (counter, ``{message}``, one per
    envelope row, by system, operation, topic, ``messaging.rtnb.outcome`` and
    ``error.type``) and ``messaging.rtnb.lag`` (histogram, ``s``, by topic;
    rows whose lag is unknown or negative — clock skew — are left out, they
    keep their span attribute). Metric points carry the export's time, not the
    envelope's: OpenTelemetry metrics cannot be back-dated.

Tokens and replay cursors are never exported: the log never holds them, and
only the columns listed above are read (:data:`ENVELOPE_KEYS` etc.).

Importing :mod:`rtnb` or :mod:`rtnb.telemetry` does not import this module or
OpenTelemetry; importing this module without the extra raises ``ImportError``
saying ``pip install 'rtnb[otel]'``.
"""

from __future__ import annotations

import importlib.metadata
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

try:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "rtnb.telemetry.otel needs OpenTelemetry, which is not installed: "
        "pip install 'rtnb[otel]' (or opentelemetry-sdk)"
    ) from exc

from ..core.status import OUTCOMES_BY_CODE, Outcome
from ..core.status import Status as ConnStatus
from .incidents import DEGRADED, ENDINGS
from .ring import TableSnapshot

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .log import EnvelopeLog

__all__ = [
    "ENVELOPE_KEYS",
    "INCIDENT_KEYS",
    "LAG_BUCKETS",
    "MUTATION_KEYS",
    "SYSTEM",
    "ExportCounts",
    "LiveExporter",
    "envelope_attributes",
    "export",
    "table_rows",
]

#: ``messaging.system`` of every span and metric point.
SYSTEM: Final = "rtnb"
_SCOPE: Final = "rtnb.telemetry.otel"
#: Envelope outcomes that mean the message was not consumed as sent.
FAILED_OUTCOMES: Final = frozenset(
    {Outcome.INVALID.value, Outcome.UNEXPECTED_TOPIC.value, Outcome.GAP_UNRECOVERABLE.value}
)
#: Bucket boundaries of the lag histogram, in seconds: the conventions' duration buckets.
LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

#: Every attribute key an envelope span may carry (nothing else is ever exported).
ENVELOPE_KEYS: Final = frozenset(
    {
        "messaging.system",
        "messaging.operation.type",
        "messaging.operation.name",
        "messaging.destination.name",
        "messaging.message.id",
        "messaging.message.body.size",
        "error.type",
        "messaging.rtnb.sequence",
        "messaging.rtnb.outcome",
        "messaging.rtnb.event_type",
        "messaging.rtnb.entity_id",
        "messaging.rtnb.transport",
        "messaging.rtnb.connection_attempt",
        "messaging.rtnb.count",
        "messaging.rtnb.lag",
    }
)
MUTATION_KEYS: Final = frozenset(
    {
        "messaging.system",
        "messaging.operation.type",
        "messaging.operation.name",
        "messaging.destination.name",
        "messaging.message.id",
        "error.type",
        "messaging.rtnb.entity_id",
        "messaging.rtnb.mutation.outcome",
        "messaging.rtnb.mutation.while_degraded",
    }
)
INCIDENT_KEYS: Final = frozenset(
    {
        "messaging.system",
        "messaging.rtnb.incident.outcome",
        "messaging.rtnb.incident.reason",
        "messaging.rtnb.incident.attempts",
        "messaging.rtnb.incident.events_missed",
        "messaging.rtnb.incident.events_replayed",
        "messaging.rtnb.incident.events_unrecoverable",
    }
)
_STATE_EVENT: Final = "rtnb.state.transition"

Attributes = dict[str, str | bool | int | float]


# -- pure core: snapshot rows -> attributes -----------------------------------------------


def table_rows(snap: TableSnapshot) -> Iterator[dict[str, Any]]:
    """The rows of a :meth:`~rtnb.telemetry.EnvelopeLog.snapshot` or ``tail``, oldest
    first, as dicts of plain values (categories decoded, outcomes as names;
    sparse columns such as the envelope ``error`` text are not read)."""
    n = snap.held
    names = [c.name for c in snap.spec.columns if c.kind != "sparse" and c.name in snap.columns]
    kinds = {c.name: c.kind for c in snap.spec.columns}
    for i in range(n):
        k = (snap.start + i) % n
        row: dict[str, Any] = {}
        for name in names:
            value = snap.columns[name][k]
            kind = kinds[name]
            if kind == "cat":
                value = snap.categories[name][value] if value >= 0 else None
            elif kind == "code8":
                value = OUTCOMES_BY_CODE[value].value
            elif kind == "bool":
                value = bool(value)
            row[name] = value
        yield row


def _finite(x: Any) -> bool:
    return isinstance(x, float | int) and math.isfinite(x)


def lag_s(row: Mapping[str, Any]) -> float | None:
    """Seconds from ``occurred_at`` to ``received_at``, None when either is unknown."""
    received: Any = row.get("received_at")
    occurred: Any = row.get("occurred_at")
    if _finite(received) and _finite(occurred):
        return float(received) - float(occurred)
    return None


def _messaging(topic: Any, operation_name: str, operation_type: str | None = None) -> Attributes:
    """The attributes every messaging span or point starts with."""
    attrs: Attributes = {"messaging.system": SYSTEM}
    if operation_type is not None:
        attrs["messaging.operation.type"] = operation_type
    attrs["messaging.operation.name"] = operation_name
    attrs["messaging.destination.name"] = str(topic)
    return attrs


def _put_str(attrs: Attributes, key: str, value: Any) -> None:
    """``attrs[key] = str(value)``, unless ``value`` is None (unknown: left out)."""
    if value is not None:
        attrs[key] = str(value)


def _outcome_attributes(attrs: Attributes, outcome: str) -> Attributes:
    """``messaging.rtnb.outcome``, and ``error.type`` when the outcome is a failure."""
    attrs["messaging.rtnb.outcome"] = outcome
    if outcome in FAILED_OUTCOMES:
        attrs["error.type"] = outcome
    return attrs


def envelope_attributes(row: Mapping[str, Any]) -> Attributes:
    """Span attributes of one envelope row (keys from :data:`ENVELOPE_KEYS` only)."""
    attrs = _messaging(row["topic"], "receive", "receive")
    attrs["messaging.message.body.size"] = int(row["bytes"])
    attrs["messaging.rtnb.transport"] = str(row["transport"])
    attrs["messaging.rtnb.connection_attempt"] = int(row["connection_attempt"])
    attrs["messaging.rtnb.count"] = int(row["count"])
    _put_str(attrs, "messaging.message.id", row.get("id"))
    if int(row["sequence"]) >= 0:
        attrs["messaging.rtnb.sequence"] = int(row["sequence"])
    _put_str(attrs, "messaging.rtnb.event_type", row.get("type"))
    _put_str(attrs, "messaging.rtnb.entity_id", row.get("entity_id"))
    lag = lag_s(row)
    if lag is not None:
        attrs["messaging.rtnb.lag"] = lag
    return _outcome_attributes(attrs, str(row["outcome"]))


def mutation_attributes(row: Mapping[str, Any]) -> Attributes:
    """Span attributes of one mutation row (keys from :data:`MUTATION_KEYS` only)."""
    outcome = str(row["outcome"])
    attrs = _messaging(row["topic"], "mutate", "send")
    attrs["messaging.message.id"] = str(row["client_mutation_id"])
    attrs["messaging.rtnb.mutation.outcome"] = outcome
    attrs["messaging.rtnb.mutation.while_degraded"] = bool(row["while_degraded"])
    _put_str(attrs, "messaging.rtnb.entity_id", row.get("entity_id"))
    if outcome != "confirmed":
        attrs["error.type"] = outcome
    return attrs


def _ns(seconds: float) -> int:
    whole = math.floor(seconds)
    return int(whole) * 1_000_000_000 + round((seconds - whole) * 1e9)


def _when(*candidates: Any) -> int:
    """The first finite time among ``candidates`` in ns, or now."""
    for t in candidates:
        if _finite(t):
            return _ns(float(t))
    return time.time_ns()


# -- incidents from state rows ---------------------------------------------------------------


@dataclass
class _Incident:
    start: float
    reason: str | None
    attempts: int
    events: list[tuple[float, Attributes]] = field(default_factory=list)


@dataclass
class _Incidents:
    """Follows state rows in order and yields each incident when it ends (the same
    periods as :func:`rtnb.telemetry.incidents.periods`)."""

    open: _Incident | None = None

    def feed(self, row: Mapping[str, Any]) -> tuple[_Incident, float, str] | None:
        status = row["status"]
        event: Attributes = {"messaging.rtnb.status": str(status)}
        _put_str(event, "messaging.rtnb.previous", row.get("previous"))
        _put_str(event, "messaging.rtnb.reason", row.get("reason"))
        event["messaging.rtnb.connection_attempt"] = int(row["attempt"])
        at = float(row["at"])
        if self.open is None:
            if status in DEGRADED:
                self.open = _Incident(
                    at,
                    row.get("reason"),
                    int(status == ConnStatus.RECONNECTING.value),
                    [(at, event)],
                )
            return None
        self.open.events.append((at, event))
        if status == ConnStatus.RECONNECTING.value:
            self.open.attempts += 1
        elif status in ENDINGS:
            done, self.open = self.open, None
            return done, at, ENDINGS[status]
        return None


# -- the exporter --------------------------------------------------------------------------


@dataclass
class ExportCounts:
    """What an export emitted."""

    envelopes: int = 0
    mutations: int = 0
    incidents: int = 0
    #: rows overwritten in the log before a live exporter could read them
    missed: int = 0


class _Emitter:
    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        try:  # not ``rtnb.__version__``: telemetry must not import the package facade
            version: str | None = importlib.metadata.version("rtnb")
        except importlib.metadata.PackageNotFoundError:
            version = None
        tp = tracer_provider if tracer_provider is not None else otel_trace.get_tracer_provider()
        mp = meter_provider if meter_provider is not None else otel_metrics.get_meter_provider()
        self.tracer = tp.get_tracer(_SCOPE, version)
        meter = mp.get_meter(_SCOPE, version)
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages delivered to rtnb's client, by topic and outcome.",
        )
        self.lag = meter.create_histogram(
            "messaging.rtnb.lag",
            unit="s",
            description="Seconds from an event's occurred_at to its receipt by the client.",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )
        self.incidents = _Incidents()
        self.counts = ExportCounts()
        self._consumed: dict[tuple[Any, Any], int] = {}
        self._root = Context()  # every span is a root: the log is not inside the caller's trace

    def _span(
        self,
        name: str,
        kind: SpanKind,
        attrs: Attributes,
        start: int,
        end: int,
        events: Sequence[tuple[float, Attributes]] = (),
    ) -> None:
        """One root span from ``start`` to ``end`` (ns, never before ``start``); ERROR
        status when ``attrs`` has an ``error.type``; ``events`` as state transitions."""
        span = self.tracer.start_span(
            name, context=self._root, kind=kind, attributes=attrs, start_time=start
        )
        if "error.type" in attrs:
            span.set_status(Status(StatusCode.ERROR))
        for at, event in events:
            span.add_event(_STATE_EVENT, event, timestamp=_ns(at))
        span.end(end_time=max(start, end))

    def envelope(self, row: Mapping[str, Any]) -> None:
        attrs = envelope_attributes(row)
        topic = attrs["messaging.destination.name"]
        at = _when(row["received_at"], row["occurred_at"])
        self._span(f"receive {topic}", SpanKind.CONSUMER, attrs, at, at)
        # counted here, added per (topic, outcome) in flush(): one SDK call per group
        key = (topic, attrs["messaging.rtnb.outcome"])
        self._consumed[key] = self._consumed.get(key, 0) + 1
        lag = attrs.get("messaging.rtnb.lag")
        if isinstance(lag, float) and lag >= 0:
            self.lag.record(lag, {"messaging.system": SYSTEM, "messaging.destination.name": topic})
        self.counts.envelopes += 1

    def flush(self) -> None:
        """Add the envelopes counted since the last flush to the consumed-messages counter."""
        for (topic, outcome), n in self._consumed.items():
            self.consumed.add(n, _outcome_attributes(_messaging(topic, "receive"), outcome))
        self._consumed.clear()

    def mutation(self, row: Mapping[str, Any]) -> None:
        attrs = mutation_attributes(row)
        start = _when(row["created_at"], row["resolved_at"])
        end = _when(row["resolved_at"]) if _finite(row["resolved_at"]) else start
        topic = attrs["messaging.destination.name"]
        self._span(f"mutate {topic}", SpanKind.PRODUCER, attrs, start, end)
        self.counts.mutations += 1

    def state(self, row: Mapping[str, Any], extra: Attributes | None = None) -> bool:
        """Feed one state row; emit the incident span if it ends one (True)."""
        ended = self.incidents.feed(row)
        if ended is None:
            return False
        incident, end, outcome = ended
        self.incident(incident, end, outcome, extra)
        return True

    def incident(
        self, incident: _Incident, end: float, outcome: str, extra: Attributes | None = None
    ) -> None:
        attrs: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.rtnb.incident.outcome": outcome,
            "messaging.rtnb.incident.attempts": incident.attempts,
        }
        _put_str(attrs, "messaging.rtnb.incident.reason", incident.reason)
        attrs.update(extra or {})
        start, stop = _ns(incident.start), _ns(end)
        self._span("rtnb incident", SpanKind.INTERNAL, attrs, start, stop, incident.events)
        self.counts.incidents += 1


def _incident_extras(log: EnvelopeLog) -> list[Attributes]:
    frame = log.incidents()
    columns = ("events_missed", "events_replayed", "events_unrecoverable")
    values = zip(*(frame[c].tolist() for c in columns), strict=True)
    return [
        {f"messaging.rtnb.incident.{c}": int(v) for c, v in zip(columns, row, strict=True)}
        for row in values
    ]


def export(
    log: EnvelopeLog,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> ExportCounts:
    """Export every row ``log`` holds as spans and metric points (see the module docstring).

    Uses the global providers when none are given. Returns what was emitted;
    an incident still open at the end of the log becomes a span ending at the
    log's newest time, with ``messaging.rtnb.incident.outcome`` = ``ongoing``.
    Flushing exporters is the caller's (``provider.force_flush()``).
    """
    from .incidents import newest_time

    out = _Emitter(tracer_provider, meter_provider)
    for row in table_rows(log.snapshot("envelopes")):
        out.envelope(row)
    out.flush()
    for row in table_rows(log.snapshot("mutations")):
        out.mutation(row)
    extras = _incident_extras(log)

    def extra() -> Attributes | None:  # the counts of the next incident, by position
        k = out.counts.incidents
        return extras[k] if k < len(extras) else None

    for row in table_rows(log.snapshot("states")):
        out.state(row, extra())
    if out.incidents.open is not None:
        incident = out.incidents.open
        out.incident(incident, max(newest_time(log), incident.start), "ongoing", extra())
    return out.counts


class LiveExporter:
    """Follows a live log and exports what is appended, on its own daemon thread.

    Polls ``log.version`` every ``interval`` seconds (nothing is read when it
    has not changed) and exports the new rows from ``log.tail(...)``: it never
    takes a lock the runtime thread waits on for more than a ring copy, and
    never runs on the runtime thread. Rows overwritten before it read them
    are counted in ``counts.missed``. Incidents are exported when they end.
    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        log: EnvelopeLog,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        interval: float = 1.0,
        from_start: bool = False,
    ) -> None:
        if not (isinstance(interval, int | float) and interval > 0):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.log = log
        self.interval = float(interval)
        self._out = _Emitter(tracer_provider, meter_provider)
        total = dict(
            zip(("envelopes", "states", "mutations", "heartbeats"), log.version, strict=False)
        )
        self._since = {
            t: 0 if from_start else total[t] for t in ("envelopes", "states", "mutations")
        }
        self._seen: tuple[int, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def counts(self) -> ExportCounts:
        return self._out.counts

    def poll(self) -> ExportCounts:
        """Export whatever was appended since the last poll (any thread); returns the totals."""
        with self._lock:
            version = self.log.version
            if version == self._seen:
                return self._out.counts
            self._seen = version
            for table, emit in (
                ("envelopes", self._out.envelope),
                ("mutations", self._out.mutation),
                ("states", self._out.state),
            ):
                snap = self.log.tail(table, self._since[table])
                self._out.counts.missed += max(0, snap.total - self._since[table] - snap.held)
                for row in table_rows(snap):
                    emit(row)
                self._since[table] = snap.total
            self._out.flush()
            return self._out.counts

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()
        self.poll()

    def start(self) -> LiveExporter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rtnb-otel", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop following the log, after one last poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LiveExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self._out.counts
        state = "running" if self._thread is not None else "stopped"
        return (
            f"<LiveExporter {state}: {c.envelopes:,} envelopes, {c.mutations:,} mutations, "
            f"{c.incidents:,} incidents exported>"
        )
