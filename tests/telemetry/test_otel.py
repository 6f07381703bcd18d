"""OpenTelemetry export of the log (``rtnb.telemetry.otel``), checked with the SDK's
in-memory exporters on the shipped chaos recording, on a live client following a
real server, and on hypothesis-generated logs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("opentelemetry.sdk", reason="needs the [otel] extra")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

import rtnb
from rtnb.core.backoff import Backoff
from rtnb.core.status import OUTCOME_CODES, Outcome
from rtnb.server import serve
from rtnb.telemetry import EnvelopeLog
from rtnb.telemetry.otel import (
    ENVELOPE_KEYS,
    INCIDENT_KEYS,
    MUTATION_KEYS,
    LiveExporter,
    export,
    table_rows,
)
from tests.conftest import wait_until

RECORDING = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "chaos_run.parquet"
STATE_EVENT_KEYS = {
    "messaging.rtnb.status",
    "messaging.rtnb.previous",
    "messaging.rtnb.reason",
    "messaging.rtnb.connection_attempt",
}


@dataclass
class Sink:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if kind is None or s.kind == kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:  # nothing was recorded at all
            return []
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            m.name: m.unit
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }


def make_sink() -> Sink:
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return Sink(spans, reader, tp, MeterProvider(metric_readers=[reader]))


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = make_sink()
    yield s
    s.tracer_provider.shutdown()
    s.meter_provider.shutdown()


def _all_values(span: ReadableSpan) -> Iterator[Any]:
    yield span.name
    yield from (span.attributes or {}).values()
    for event in span.events:
        yield event.name
        yield from (event.attributes or {}).values()


# -- the shipped recording ---------------------------------------------------------------


def test_recording_exports_one_consumer_span_per_envelope_with_the_conventions(
    sink: Sink,
) -> None:
    log = EnvelopeLog.read_parquet(RECORDING)
    env = log.envelopes
    counts = export(log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider)
    spans = sink.finished(SpanKind.CONSUMER)
    assert counts.envelopes == len(spans) == len(env) == sum(log.counts.values())
    for span, row in zip(spans, env.itertuples(), strict=True):
        attrs = dict(span.attributes or {})
        assert set(attrs) <= ENVELOPE_KEYS
        assert attrs["messaging.system"] == "rtnb"
        assert attrs["messaging.operation.type"] == "receive"
        assert attrs["messaging.destination.name"] == row.topic
        assert span.name == f"receive {row.topic}"
        assert attrs["messaging.message.body.size"] == row.bytes
        assert attrs["messaging.rtnb.outcome"] == row.outcome
        assert attrs["messaging.rtnb.transport"] == row.transport
        assert attrs.get("messaging.message.id") == (row.id if isinstance(row.id, str) else None)
        assert attrs.get("messaging.rtnb.sequence", -1) == row.sequence
        assert span.start_time == span.end_time == row.received_at.value
        if math.isfinite(row.lag_ms):
            assert attrs["messaging.rtnb.lag"] == pytest.approx(row.lag_ms / 1e3, abs=1e-6)
        failed = row.outcome in {"invalid", "unexpected_topic", "gap_unrecoverable"}
        assert ("error.type" in attrs) == failed
        assert (span.status.status_code == StatusCode.ERROR) == failed
    # the recording holds gap ranges, replays and duplicates: the interesting cases are there
    assert {"gap_unrecoverable", "replayed", "duplicate"} <= set(env["outcome"].astype(str))


def test_recording_metrics_count_every_envelope_by_topic_and_outcome(sink: Sink) -> None:
    log = EnvelopeLog.read_parquet(RECORDING)
    env = log.envelopes
    export(log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider)
    units = sink.units()
    assert units["messaging.client.consumed.messages"] == "{message}"
    assert units["messaging.rtnb.lag"] == "s"
    consumed = {
        (
            p.attributes["messaging.destination.name"],
            p.attributes["messaging.rtnb.outcome"],
        ): p.value
        for p in sink.points("messaging.client.consumed.messages")
    }
    expected = Counter(zip(env["topic"].astype(str), env["outcome"].astype(str), strict=True))
    assert consumed == dict(expected)
    assert sum(consumed.values()) == sum(log.counts.values())
    for p in sink.points("messaging.client.consumed.messages"):
        assert p.attributes["messaging.system"] == "rtnb"
        assert p.attributes["messaging.operation.name"] == "receive"
    lags = {
        p.attributes["messaging.destination.name"]: p for p in sink.points("messaging.rtnb.lag")
    }
    for topic, group in env.groupby("topic", observed=True):
        finite = group["lag_ms"][group["lag_ms"] >= 0] / 1e3
        assert lags[str(topic)].count == len(finite)
        assert lags[str(topic)].sum == pytest.approx(finite.sum(), rel=1e-9)


def test_recording_incidents_are_spans_with_their_transitions_as_events(sink: Sink) -> None:
    log = EnvelopeLog.read_parquet(RECORDING)
    incidents = log.incidents()
    states = log.states
    counts = export(log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider)
    spans = [s for s in sink.finished(SpanKind.INTERNAL) if s.name == "rtnb incident"]
    assert counts.incidents == len(spans) == len(incidents) > 0
    events_in_incidents = 0
    for span, row in zip(spans, incidents.itertuples(), strict=True):
        attrs = dict(span.attributes or {})
        assert set(attrs) <= INCIDENT_KEYS
        assert span.start_time == row.start.value
        assert span.end_time == row.end.value
        assert attrs["messaging.rtnb.incident.outcome"] == row.outcome
        assert attrs["messaging.rtnb.incident.attempts"] == row.attempts
        assert attrs["messaging.rtnb.incident.events_missed"] == row.events_missed
        assert attrs["messaging.rtnb.incident.events_unrecoverable"] == row.events_unrecoverable
        statuses = [e.attributes["messaging.rtnb.status"] for e in span.events]  # type: ignore[index]
        assert statuses[0] in {"degraded", "reconnecting"}
        assert statuses[-1] in {"subscribed", "closed"}
        for event in span.events:
            assert set(event.attributes or {}) <= STATE_EVENT_KEYS
            assert span.start_time <= event.timestamp <= span.end_time  # type: ignore[operator]
        inside = (states["at"] >= row.start) & (states["at"] <= row.end)
        assert len(span.events) == int(inside.sum())
        events_in_incidents += len(span.events)
    assert events_in_incidents > len(spans)


def test_recording_mutations_are_producer_spans(sink: Sink) -> None:
    log = EnvelopeLog.read_parquet(RECORDING)
    mutations = log.mutations
    export(log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider)
    spans = sink.finished(SpanKind.PRODUCER)
    assert len(spans) == len(mutations) > 0
    for span, row in zip(spans, mutations.itertuples(), strict=True):
        attrs = dict(span.attributes or {})
        assert set(attrs) <= MUTATION_KEYS
        assert attrs["messaging.operation.type"] == "send"
        assert attrs["messaging.message.id"] == row.client_mutation_id
        assert attrs["messaging.rtnb.mutation.outcome"] == row.outcome
        assert span.start_time == row.created_at.value
        assert span.end_time == row.resolved_at.value
        assert (span.status.status_code == StatusCode.ERROR) == (row.outcome != "confirmed")


def test_an_incident_still_open_ends_at_the_newest_time_in_the_log(sink: Sink) -> None:
    log = EnvelopeLog()
    log.append_state(100.0, "subscribed", "authenticated", None, 0, 1.0)
    log.append_state(110.0, "degraded", "subscribed", "no heartbeat for 2.0 s", 0, 10.0)
    log.append_envelope(125.5, 125.0, "t", "x", "e1", 1, None, 0, "websocket", 0, 10)
    counts = export(log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider)
    (span,) = [s for s in sink.finished(SpanKind.INTERNAL) if s.name == "rtnb incident"]
    assert counts.incidents == 1
    assert (span.start_time, span.end_time) == (110 * 10**9, 125_500_000_000)
    attrs = dict(span.attributes or {})
    assert attrs["messaging.rtnb.incident.outcome"] == "ongoing"
    assert attrs["messaging.rtnb.incident.reason"] == "no heartbeat for 2.0 s"
    assert [e.attributes["messaging.rtnb.status"] for e in span.events] == ["degraded"]  # type: ignore[index]


# -- a live client on a real server -------------------------------------------------------

_TOKEN_FIELD = re.compile(r'"(?:replayToken|token|latestToken)"\s*:\s*"([^"]+)"')


def _collect_tokens(data: Any, into: set[str]) -> None:
    text = data.decode() if isinstance(data, bytes) else data
    into.update(_TOKEN_FIELD.findall(text))
    for hb in re.finditer(r'"op":"heartbeat"[^{}]*"topics":(\{[^{}]*\})', text):
        into.update(json.loads(hb.group(1)).values())


def test_live_exporter_follows_a_real_connection_through_a_disconnect(sink: Sink) -> None:
    demo = {"tenants": ["acme"], "seed": 3, "rates": {"fleet": 40.0, "prices": 40.0}}
    with serve(port=0, heartbeat_interval=0.3, demo=demo) as srv:
        issued: set[str] = set()

        def token() -> str:
            value = srv.issue_token(tenant="acme", user="ana", role="operator")
            issued.add(value)
            return value

        conn = rtnb.connect(
            srv.url,
            token=token,
            heartbeat_interval=0.3,
            shared=False,
            backoff=Backoff(base=0.1, cap=0.3),
        )
        seen: set[str] = set()
        conn.add_tap(lambda data, *_: _collect_tokens(data, seen))
        try:
            with LiveExporter(
                conn.log,
                tracer_provider=sink.tracer_provider,
                meter_provider=sink.meter_provider,
                interval=0.05,
                from_start=True,
            ) as live:
                conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=10)
                conn.subscribe("fleet", "sequence")
                conn.subscribe("prices", "entity")
                wait_until(lambda: live.counts.envelopes > 50, timeout=10)
                srv.chaos.disconnect_all()
                wait_until(lambda: live.counts.incidents >= 1, timeout=15)
                mark = live.counts.envelopes
                wait_until(lambda: live.counts.envelopes > mark + 20, timeout=10)
                conn.close()
            # close() polled once more: everything the log holds was exported, once
            assert live.counts.missed == 0
            env = conn.log.envelopes
            spans = sink.finished(SpanKind.CONSUMER)
            assert live.counts.envelopes == len(spans) == len(env)
            assert [s.start_time for s in spans] == [t.value for t in env["received_at"]]
            assert Counter(s.attributes["messaging.rtnb.outcome"] for s in spans) == Counter(  # type: ignore[index]
                {k: v for k, v in conn.log.counts.items() if v}
            )
            incidents = conn.log.incidents()
            finished = incidents[incidents["outcome"] != "ongoing"]
            exported = [s for s in sink.finished(SpanKind.INTERNAL) if s.name == "rtnb incident"]
            assert len(exported) == len(finished) >= 1
            assert [s.start_time for s in exported] == [t.value for t in finished["start"]]
            tokens = seen | issued
            assert tokens, "the run carried no token: the secret check below would be vacuous"
            for span in sink.finished():
                for value in _all_values(span):
                    assert not any(t in str(value) for t in tokens), (span.name, value)
        finally:
            conn.close()


def test_live_exporter_counts_rows_it_could_not_read_before_they_were_overwritten(
    sink: Sink,
) -> None:
    log = EnvelopeLog(envelope_capacity=4)
    live = LiveExporter(
        log, tracer_provider=sink.tracer_provider, meter_provider=sink.meter_provider
    )
    for i in range(10):
        log.append_envelope(float(i), float(i), "t", "x", f"e{i}", i, None, 0, "websocket", 0, 10)
    counts = live.poll()
    assert (counts.envelopes, counts.missed) == (4, 6)
    assert live.poll() == counts  # unchanged version: nothing re-exported
    assert [s.attributes["messaging.message.id"] for s in sink.finished()] == [  # type: ignore[index]
        "e6",
        "e7",
        "e8",
        "e9",
    ]


def test_live_exporter_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="interval must be a positive number"):
        LiveExporter(EnvelopeLog(), interval=0)


# -- hypothesis: any log ---------------------------------------------------------------------

SECRET = "tok-SECRET-9f3c"
_text = st.text(alphabet="abcXYZ-_.: é", max_size=8)
_outcomes = st.sampled_from(list(Outcome))
_envelope = st.tuples(
    st.floats(1.7e9, 1.8e9),
    st.one_of(st.floats(1.7e9, 1.8e9), st.just(math.nan)),
    _text,
    _text,
    st.one_of(st.none(), _text),
    st.integers(-1, 10**6),
    st.one_of(st.none(), _text),
    _outcomes,
    st.sampled_from(["websocket", "sse", "polling"]),
    st.integers(0, 50),
    st.integers(0, 10**6),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_envelope, max_size=30), capacity=st.integers(1, 12))
def test_any_log_exports_every_held_row_with_known_keys_and_no_error_text(
    rows: list[tuple[Any, ...]], capacity: int
) -> None:
    log = EnvelopeLog(envelope_capacity=capacity)
    for received, occurred, topic, type_, id_, seq, entity, outcome, transport, a, n, err in rows:
        log.append_envelope(
            received,
            occurred,
            topic,
            type_,
            id_,
            seq,
            entity,
            OUTCOME_CODES[outcome],
            transport,
            a,
            n,
            # an invalid frame's text may quote the frame, token included: never exported
            error=f"bad frame {{'token': '{SECRET}'}}" if err else None,
        )
    frame = log.envelopes
    held = list(table_rows(log.snapshot("envelopes")))
    assert [r["id"] for r in held] == [None if not isinstance(v, str) else v for v in frame["id"]]
    assert [r["received_at"] for r in held] == [rows[i][0] for i in range(len(rows))][
        len(rows) - len(held) :
    ]
    s = make_sink()
    try:
        counts = export(log, tracer_provider=s.tracer_provider, meter_provider=s.meter_provider)
        spans = s.finished()
        assert counts.envelopes == len(spans) == len(frame) == min(len(rows), capacity)
        for span in spans:
            attrs = dict(span.attributes or {})
            assert set(attrs) <= ENVELOPE_KEYS
            assert all(isinstance(v, str | int | float | bool) for v in attrs.values())
            assert not any(SECRET in str(v) for v in _all_values(span))
        consumed = sum(p.value for p in s.points("messaging.client.consumed.messages"))
        assert consumed == len(frame)
    finally:
        s.tracer_provider.shutdown()
        s.meter_provider.shutdown()


# -- importing --------------------------------------------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_rtnb_and_its_telemetry_does_not_import_opentelemetry() -> None:
    done = _run(
        "import sys, rtnb, rtnb.telemetry\n"
        "rtnb.EnvelopeLog().summary()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_extra_the_error_says_what_to_install() -> None:
    done = _run(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import rtnb.telemetry.otel\n"
    )
    assert done.returncode != 0
    assert "pip install 'rtnb[otel]'" in done.stderr
    assert "ImportError" in done.stderr
