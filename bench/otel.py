"""OpenTelemetry export cost: ``rtnb.telemetry.otel.export`` on the shipped chaos recording.

Baseline, measured in the same run on the same rows: the OTel SDK itself
creating and ending one span per envelope with the very same attributes (what
any exporter must pay). The ratio is the cost rtnb adds on top (row decoding,
attribute building, incident and mutation spans, the lag histogram). Both use
a ``SimpleSpanProcessor`` into an ``InMemorySpanExporter``. Best of 3.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable

RECORDING = pathlib.Path(__file__).parents[1] / "notebooks" / "data" / "chaos_run.parquet"


def _best(fn: Callable[[], float], n: int = 3) -> float:
    return min(fn() for _ in range(n))


def main() -> None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        print("skipped: needs the [otel] extra (pip install 'rtnb[otel]')")
        return

    from rtnb.telemetry import EnvelopeLog
    from rtnb.telemetry.otel import envelope_attributes, export, table_rows

    log = EnvelopeLog.read_parquet(RECORDING)
    log.incidents()  # warm pandas
    n = len(log)

    def provider() -> TracerProvider:
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        return tp

    def rtnb_export() -> float:
        tp, mp = provider(), MeterProvider(metric_readers=[InMemoryMetricReader()])
        t = time.perf_counter()
        export(log, tracer_provider=tp, meter_provider=mp)
        return time.perf_counter() - t

    rows = [envelope_attributes(r) for r in table_rows(log.snapshot("envelopes"))]

    def bare_sdk() -> float:
        tracer = provider().get_tracer("bench")
        t = time.perf_counter()
        for attrs in rows:
            tracer.start_span("receive", attributes=attrs).end()
        return time.perf_counter() - t

    ours, base = _best(rtnb_export), _best(bare_sdk)
    print(f"{n:,} envelopes (+ incidents, mutations) from {RECORDING.name}")
    print(f"  bare OTel SDK spans, same attributes : {base * 1e6 / n:8.1f} µs/envelope")
    print(f"  rtnb.telemetry.otel.export           : {ours * 1e6 / n:8.1f} µs/envelope")
    print(f"  ratio export / bare SDK              : {ours / base:8.2f}×")


if __name__ == "__main__":
    main()
