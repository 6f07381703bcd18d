"""Record a real chaos run against the reference server: ``notebooks/data/chaos_run.parquet``.

    .venv/bin/python scripts/record_chaos_run.py [--out PATH]

About a minute of the demo topics for one tenant, with the client over a
real WebSocket, through a scripted incident:

1. healthy traffic;
2. per-event faults (drops, duplicates, reordering, delay): gaps the client
   closes by re-subscribing from its last replay token;
3. ``disconnect_all``: a reconnect with a complete replay;
4. a silent network cut (``stall``, 4.5 s) longer than the server retains for the
   busiest topic: replay is *unavailable* for it, the client takes a snapshot
   and logs the unrecoverable range;
5. mutations, one confirmed and one rejected;
6. token expiry: the client fetches a fresh token and reconnects;
7. a server restart (data kept): reconnect and replay again.

The recording (rolling files in a temporary directory, consolidated into one
parquet file) carries the sanitised frames, so notebook 02 can replay it; the
script checks that no token that crossed the wire is in the file, and that
the client ended with the server's state.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rtnb
from rtnb.core.backoff import Backoff
from rtnb.telemetry import EnvelopeLog

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "notebooks" / "data" / "chaos_run.parquet"
TENANT = "acme"
HEARTBEAT = 1.0
TOPICS = {"incidents": "sequence", "fleet": "sequence", "prices": "entity"}
_TOKEN = re.compile(
    r'"(?:replayToken|token|latestToken)"\s*:\s*"([^"]+)"|"[a-z]+":"([A-Za-z0-9_-]{40,})"'
)


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"chaos run: {what} did not happen within {timeout} s")
        time.sleep(0.05)


def phase(name: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {name}", flush=True)


def run(out: Path) -> None:
    demo = {"tenants": [TENANT], "seed": 42}
    with rtnb.serve(port=0, demo=demo, heartbeat_interval=HEARTBEAT, retention=150) as srv:
        seen: set[str] = set()

        def token() -> str:
            value = srv.issue_token(tenant=TENANT, user="ana", role="operator")
            seen.add(value)
            return value

        conn = rtnb.connect(
            srv.url,
            token=token,
            heartbeat_interval=HEARTBEAT,
            backoff=Backoff(base=0.5, cap=3.0),
            shared=False,
        )

        def collect(data: object, *_: object) -> None:
            text = data.decode() if isinstance(data, bytes) else str(data)
            for a, b in _TOKEN.findall(text):
                seen.add(a or b)

        conn._session.taps.append(collect)
        with tempfile.TemporaryDirectory() as tmp:
            recorder = conn.record(str(Path(tmp) / "run"), roll_interval=5.0)
            conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=15)
            topics = {name: conn.subscribe(name, ordering) for name, ordering in TOPICS.items()}

            def applied() -> int:
                counts = conn.log.counts
                return counts["applied"] + counts["replayed"]

            def reconnects() -> int:
                return int(conn.log.summary()["reconnects"])

            def healthy(seconds: float) -> None:
                mark = applied()
                time.sleep(seconds)
                wait_until("traffic", lambda: applied() > mark)

            def fault(name: str, action: Callable[[], object]) -> None:
                phase(name)
                before = reconnects()
                action()
                wait_until(f"a reconnect after {name}", lambda: reconnects() > before)
                conn.wait_for(rtnb.Status.SUBSCRIBED, timeout=30)
                healthy(4)

            phase("healthy traffic")
            healthy(8)
            phase("per-event faults: drop 3%, duplicate 3%, reorder 5%, delay 0-40 ms")
            srv.chaos.set(drop=0.03, duplicate=0.03, reorder=0.05, delay_ms=(0, 40), seed=7)
            healthy(10)
            srv.chaos.set()
            healthy(3)
            fault("disconnect_all", srv.chaos.disconnect_all)
            fault(
                "silent network cut for 4.5 s (longer than retention for prices)",
                lambda: srv.chaos.stall(4.5),
            )
            phase("mutations: one confirmed, one rejected")
            incidents = topics["incidents"]
            open_ = [k for k, v in incidents.entities.items() if v.get("status") == "open"]
            target = open_[0] if open_ else next(iter(incidents.entities))
            good = incidents.mutate(target, {"assignee": "bo"})
            bad = incidents.mutate(target, {"status": "exploded"})
            wait_until(
                "mutations resolved", lambda: good.status != "pending" and bad.status != "pending"
            )
            healthy(2)
            fault("token expiry", srv.chaos.expire_tokens)
            fault("server restart (data kept)", lambda: srv.chaos.restart(keep_data=True))
            phase("settling")
            wait_until(
                "the client to match the server",
                lambda: all(
                    t.server_entities == srv.truth(n, tenant=TENANT) for n, t in topics.items()
                ),
            )
            conn.close()
            recorder.stop()
            log = EnvelopeLog.read_parquet(Path(tmp) / "run")
        out.parent.mkdir(parents=True, exist_ok=True)
        log.to_parquet(out)
    data = out.read_bytes()
    leaked = [t for t in seen if t.encode() in data]
    assert not leaked, f"{len(leaked)} tokens in the recording"
    summary = log.summary()
    print(f"wrote {out} ({len(data) / 1e6:.2f} MB): {log!r}")
    print(summary)
    print(log.incidents()[["start", "duration_s", "outcome", "attempts", "events_missed"]])
    assert len(data) < 2_000_000, "the shipped recording must stay small"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run(parser.parse_args().out)


if __name__ == "__main__":
    main()
