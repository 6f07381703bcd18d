"""A real chaos run, recorded once per test session and shared by client, telemetry and chart tests.

The run uses the reference server with its demo producers and the real
client over a WebSocket: per-event faults (drop, duplicate, reorder, delay),
then a disconnect, a heartbeat stall, token expiry and a server restart,
each waited for by condition. It keeps what the live session ended with
(topic states, outcome counts, the envelopes DataFrame) and every token that
crossed the wire, so tests can compare a replay with the live session and
grep the recording for secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import rtnb
from rtnb.core.backoff import Backoff
from rtnb.server import serve
from tests.conftest import wait_until

#: Fast heartbeats so a heartbeat stall degrades the connection quickly.
HEARTBEAT = 0.3
TOPICS = {"incidents": "sequence", "fleet": "sequence", "prices": "entity"}
_TOKEN_FIELD = re.compile(r'"(?:replayToken|token|latestToken)"\s*:\s*"([^"]+)"')


@dataclass
class ChaosRun:
    path: Path
    live_states: dict[str, dict[str, Any]]
    live_counts: dict[str, int]
    live_envelopes: pd.DataFrame
    live_summary: dict[str, Any]
    tokens: set[str] = field(default_factory=set)


def _collect_tokens(data: Any, into: set[str]) -> None:
    text = data.decode() if isinstance(data, bytes) else data
    into.update(_TOKEN_FIELD.findall(text))
    for hb in re.finditer(r'"op":"heartbeat"[^{}]*"topics":(\{[^{}]*\})', text):
        into.update(json.loads(hb.group(1)).values())


def _applied(conn: rtnb.Connection) -> int:
    counts = conn.log.counts
    return counts["applied"] + counts["replayed"]


def _reconnects(conn: rtnb.Connection) -> int:
    return int(conn.log.summary()["reconnects"])


def run_chaos(path: Path) -> ChaosRun:
    """Record a short chaos run into ``path``; return what the live session saw."""
    demo = {
        "tenants": ["acme"],
        "seed": 5,
        "rates": {"incidents": 4.0, "fleet": 30.0, "prices": 60.0},
    }
    with serve(port=0, heartbeat_interval=HEARTBEAT, demo=demo) as srv:
        issued: set[str] = set()

        def token() -> str:
            value = srv.issue_token(tenant="acme", user="ana", role="operator")
            issued.add(value)
            return value

        conn = rtnb.connect(
            srv.url,
            token=token,
            heartbeat_interval=HEARTBEAT,
            shared=False,
            backoff=Backoff(base=0.2, cap=0.5),
        )
        seen: set[str] = set()
        conn.add_tap(lambda data, *_: _collect_tokens(data, seen))
        recorder = conn.record(path, roll_interval=0.5)
        conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=10)
        topics = {name: conn.subscribe(name, ordering) for name, ordering in TOPICS.items()}
        wait_until(lambda: _applied(conn) > 100, timeout=10)

        srv.chaos.set(drop=0.05, duplicate=0.05, reorder=0.1, delay_ms=(0, 5), seed=11)
        mark = _applied(conn)
        wait_until(lambda: _applied(conn) > mark + 200, timeout=10)
        for fault in (
            srv.chaos.disconnect_all,
            lambda: srv.chaos.stall(HEARTBEAT * 8),
            srv.chaos.expire_tokens,
            lambda: srv.chaos.restart(keep_data=True),
        ):
            before = _reconnects(conn)
            fault()
            wait_until(lambda b=before: _reconnects(conn) > b, timeout=15)  # type: ignore[misc]
            conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=15)
            mark = _applied(conn)
            wait_until(lambda m=mark: _applied(conn) > m + 50, timeout=10)  # type: ignore[misc]
        srv.chaos.set()
        incident = next(iter(topics["incidents"].server_entities), None)
        if incident is not None:
            topics["incidents"].mutate(incident, {"assignee": "bo"})
        wait_until(lambda: conn.log.summary()["mutations"], timeout=10)
        wait_until(
            lambda: all(
                t.server_entities == srv.truth(n, tenant="acme") for n, t in topics.items()
            ),
            timeout=15,
        )
        conn.close()
        recorder.stop()
        return ChaosRun(
            path=path,
            live_states={name: t.server_entities for name, t in topics.items()},
            live_counts=conn.log.counts,
            live_envelopes=conn.log.envelopes,
            live_summary=dict(conn.log.summary()),
            tokens=seen | issued,
        )


@pytest.fixture(scope="session")
def chaos_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosRun]:
    yield run_chaos(tmp_path_factory.mktemp("chaos") / "chaos.parquet")
