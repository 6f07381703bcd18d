"""Widgets: kernel-side cost of feeding them, and what a real browser sees.

Part 1, kernel side (in-process, no browser): a topic store receives 1k, 10k
and 50k events/s over 10,000 entities for a few seconds, paced in real time;
``StreamTable`` feeds take the batched change sets and build their messages
(rows + msgspec encoding) at ``fps`` = 10. Reported: the feed's CPU per event,
messages per second per widget (the most in any one-second window) and rows
per message; then 30 tables at once against the kernel-wide budget, averaged
over Jupyter Server's 3-second window.

Part 2, in JupyterLab + headless Chromium (the same 2 cores run the reference
server, the kernel, Jupyter Server and the browser): the reference server
publishes single-entity events at 1k and 10k events/s into a 500-row and a
100,000-row table. Measured in the page: requestAnimationFrame intervals
(median, p95), long-task time (PerformanceObserver), messages the widget
received; and how long after the stream stops the final value is on screen.

Bars (issue 5 / DESIGN.md §6): ≤ fps messages/s per widget; frames median
≤ 17 ms and p95 ≤ 33 ms; final value on screen within 1 s; no IOPub
rate-limit message in Jupyter Server's log.
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from typing import Any

from rtnb.client.session import ConnectionState
from rtnb.client.topic_view import RowCursor
from rtnb.core.pipeline import Pipeline
from rtnb.core.status import Status
from rtnb.widgets.budget import DEFAULT_FPS, IOPUB_MSG_RATE_LIMIT, MessageBudget
from rtnb.widgets.rows import TableFeed

OK = {True: "PASS", False: "MISS"}
KERNEL_SECONDS = 3.0
BROWSER_SECONDS = 5.0
ENTITIES = 10_000


class _NoLoop:
    """Feeds are flushed by hand here; nothing is scheduled."""

    def call_soon_threadsafe(self, fn: Any) -> None:
        return None

    def call_later(self, delay: float, fn: Any) -> None:
        return None


def _max_in_window(times: list[float], window: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def kernel_side(rate: float, tables: int = 1, seconds: float = KERNEL_SECONDS) -> dict[str, float]:
    pipeline = Pipeline()
    ts = pipeline.add_topic("bench", "none")
    store = ts.store
    store.replace(
        (f"e{i:05d}", {"n": 0, "name": f"entity {i}", "x": 0.0}, 0) for i in range(ENTITIES)
    )
    ts.status = "live"
    state = ConnectionState(
        Status.SUBSCRIBED, Status.AUTHENTICATED, "bench", 0, None, "websocket", 0.0
    )
    budget = MessageBudget()
    sent: list[list[tuple[float, int, int]]] = [[] for _ in range(tables)]
    feeds = []
    for k in range(tables):

        def send(content: dict[str, Any], buffers: list[bytes], k: int = k) -> None:
            sent[k].append((time.monotonic(), len(buffers[0]) if buffers else 0, content["seq"]))

        feed = TableFeed(
            _NoLoop(), send, rows=RowCursor(ts), connection_state=lambda: state, budget=budget
        )
        feed.activate()
        feeds.append(feed)
    rng = random.Random(1)
    ids = [f"e{i:05d}" for i in range(ENTITIES)]
    interval = 1.0 / DEFAULT_FPS
    start = time.monotonic()
    next_tick = [start + interval * (k / tables) for k in range(tables)]
    applied = 0
    seq = 0
    flush_cpu = 0.0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int((now - start) * rate) - applied
        for _ in range(due):
            seq += 1
            store.apply(ids[rng.randrange(ENTITIES)], "e.updated", {"n": seq, "x": seq * 0.5}, seq)
        ts.last_event_at = time.time()
        applied += due
        for k, feed in enumerate(feeds):
            if now >= next_tick[k]:
                t0 = time.perf_counter()
                feed.flush(now)
                flush_cpu += time.perf_counter() - t0
                next_tick[k] += interval
        time.sleep(0.0005)
    elapsed = time.monotonic() - start
    first = [t for t, _, _ in sent[0]]
    rows = feeds[0].rows_sent
    all_times = sorted(t for s in sent for t, _, _ in s)
    return {
        "rate": applied / elapsed,
        "us_per_event": flush_cpu / max(1, applied) * 1e6,
        "cpu_share": flush_cpu / elapsed,
        "max_per_s": _max_in_window(first, 1.0),
        "rows_per_msg": (rows - ENTITIES) / max(1, len(first) - 1),  # diffs, not the snapshot
        "kb_per_s": sum(b for _, b, _ in sent[0]) / elapsed / 1024,
        "kernel_3s": _max_in_window(all_times, 3.0) / 3.0,
        "refused": budget.refused,
    }


def print_kernel(results: list[tuple[float, dict[str, float]]], crowd: dict[str, float]) -> bool:
    fps = DEFAULT_FPS
    print(f"Kernel side: {ENTITIES:,} entities, fps={fps}, {KERNEL_SECONDS:.0f} s per rate")
    head = f"{'events/s in':>12}{'µs/event':>10}{'CPU':>7}{'msgs/s max':>12}{'rows/diff':>10}{'KiB/s':>8}  bar"
    print(head)
    good = True
    for _rate, r in results:
        ok = r["max_per_s"] <= fps
        good &= ok
        print(
            f"{r['rate']:>12,.0f}{r['us_per_event']:>10.2f}{r['cpu_share']:>6.1%}"
            f"{r['max_per_s']:>12.0f}{r['rows_per_msg']:>10,.0f}{r['kb_per_s']:>8,.0f}"
            f"  ≤ {fps}/s per widget {OK[ok]}"
        )
    limit = IOPUB_MSG_RATE_LIMIT
    ok = crowd["kernel_3s"] <= limit / 4
    good &= ok
    print(
        f"30 tables at {crowd['rate']:,.0f} events/s: all rtnb messages {crowd['kernel_3s']:.0f}/s "
        f"over 3 s (budget refused {crowd['refused']:.0f} sends)  ≤ {limit / 4:.0f}/s "
        f"(IOPub limit {limit:.0f}/s) {OK[ok]}"
    )
    return good


# -- part 2: the browser --------------------------------------------------------------------

TENANT = "bench"
ROWS = {"t500": 500, "t100k": 100_000}
CELLS = [
    "import os, rtnb\nfrom rtnb.widgets import StreamTable\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=30)",
    "StreamTable(conn.subscribe('t500'), title='t500', height=400)",
    "StreamTable(conn.subscribe('t100k'), title='t100k', height=400)",
]
INSTRUMENT = """() => {
  const s = window.__bench = {frames: [], longtask: 0, running: true};
  let last = performance.now();
  const loop = (t) => { s.frames.push(t - last); last = t; if (s.running) requestAnimationFrame(loop); };
  requestAnimationFrame((t) => { last = t; requestAnimationFrame(loop); });
  s.obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) s.longtask += e.duration; });
  s.obs.observe({type: 'longtask'});
}"""


def _store(title: str) -> str:
    return f"document.querySelector('.rtnb-table[data-title=\"{title}\"]').parentElement.__rtnb"


def browser_case(srv: Any, lp: Any, title: str, rate: float) -> dict[str, float]:
    n = ROWS[title]
    lp.page.evaluate(
        f"() => document.querySelector('.rtnb-table[data-title=\"{title}\"]')"
        ".scrollIntoView({block: 'center'})"
    )
    lp.wait_js(
        f"() => {{ const v = {_store(title)}; return v.visible && v.raf === null"
        f" && v.order.length === {n}; }}",
        60,
        f"the {title} table on screen",
    )
    lp.page.evaluate(  # timestamp every message the widget receives
        f"() => {{ const st = {_store(title)}.store; window.__benchMsgs = [];"
        " if (st.__benchApply) return; const apply = st.__benchApply = st.apply.bind(st);"
        " st.apply = (m, d) => { window.__benchMsgs.push(performance.now()); return apply(m, d); }; }"
    )
    lp.page.evaluate(INSTRUMENT)
    stop = threading.Event()
    published = [0]
    rng = random.Random(7)
    ids = [f"r{i:06d}" for i in range(1, n)]  # r000000 (the top row) gets the final value

    def produce() -> None:
        per_slot = max(1, int(rate / 100))
        t0, k = time.monotonic(), 0
        while not stop.is_set():
            batch = [
                ("row.updated", rng.choice(ids), {"n": k * per_slot + i}) for i in range(per_slot)
            ]
            srv.publish_many(title, batch, tenant=TENANT)
            published[0] += per_slot
            k += 1
            time.sleep(max(0.0, t0 + k * 0.01 - time.monotonic()))

    producer = threading.Thread(target=produce)
    start = time.monotonic()
    producer.start()
    time.sleep(BROWSER_SECONDS)
    stop.set()
    producer.join()
    elapsed = time.monotonic() - start
    marker = f"final-{int(rate)}-{title}"
    lp.page.evaluate(
        """([sel, marker]) => { const t = document.querySelector(sel);
          window.__benchSeen = null;
          const check = () => { const r = t.querySelector('tr[data-id="r000000"]');
            if (r && r.textContent.includes(marker)) { window.__benchSeen = Date.now(); o.disconnect(); } };
          const o = new MutationObserver(check);
          o.observe(t, {subtree: true, childList: true, characterData: true}); }""",
        [f'.rtnb-table[data-title="{title}"]', marker],
    )
    sent_at = time.time()
    srv.publish(title, "row.updated", {"label": marker}, tenant=TENANT, entity_id="r000000")
    seen = lp.wait_js("() => window.__benchSeen", 30, f"the final value in {title}")
    stats = lp.page.evaluate(
        "() => { const s = window.__bench; s.running = false; s.obs.disconnect();"
        " return [s.frames, s.longtask, window.__benchMsgs]; }"
    )
    frames, longtask, received = stats
    frames = [f for f in frames if f > 0]
    frames.sort()
    return {
        "rate": published[0] / elapsed,
        "median": statistics.median(frames),
        "p95": frames[int(0.95 * (len(frames) - 1))],
        "longtask": longtask,
        "msgs_per_s": len(received) / elapsed,
        "msgs_max": _max_in_window([t / 1000.0 for t in received], 1.0),
        "final_s": seen / 1000.0 - sent_at,
    }


def browser_side() -> bool:
    import rtnb
    from rtnb.widgets.lab import Lab
    from tests.widgets.lab_harness import (
        BrowserUnavailable,
        LabPage,
        chromium_page,
        new_workdir,
        require_chromium,
        write_notebook,
    )

    try:
        require_chromium()
    except BrowserUnavailable as exc:
        print(f"browser part not run: {exc}")
        raise SystemExit(1) from None
    work = new_workdir("rtnb-bench-")
    write_notebook(work / "bench.ipynb", CELLS)
    results: list[tuple[str, float, dict[str, float]]] = []
    with rtnb.serve(port=0, retention=100_000) as srv:
        for title, n in ROWS.items():
            for k in range(0, n, 10_000):
                srv.publish_many(
                    title,
                    [("row.updated", f"r{i:06d}", {"n": 0, "label": f"row {i}"})
                     for i in range(k, min(n, k + 10_000))],
                    tenant=TENANT,
                )  # fmt: skip
        token = srv.issue_token(tenant=TENANT, user="bench", role="viewer")
        env = {"RTNB_URL": srv.url, "RTNB_TOKEN": token}
        with (
            Lab(work, work / ".state", env=env, expose_app=True) as lab,
            chromium_page(work / ".chromium", width=1280, height=900) as (_ctx, page),
        ):
            lp = LabPage(page)
            lp.open(lab.notebook_url("bench.ipynb"))
            lp.run_all()
            lp.wait_js(
                "() => document.querySelector('.rtnb-table[data-title=\"t100k\"] .rtnb-count')"
                "?.textContent === '100,000 rows'",
                120,
                "both tables filled",
            )
            lp.kernel_idle()
            for title in ROWS:
                for rate in (1_000.0, 10_000.0):
                    results.append((title, rate, browser_case(srv, lp, title, rate)))
            log = lab.log_text()
            errors = lp.errors
    iopub = "IOPub message rate exceeded" in log
    print(
        f"\nJupyterLab + headless Chromium, {BROWSER_SECONDS:.0f} s of single-entity events per "
        "case (server, kernel, Jupyter Server and browser share the machine)"
    )
    print(
        f"{'table':>7}{'events/s':>10}{'frame p50':>11}{'frame p95':>11}{'long tasks':>12}"
        f"{'msgs/s':>8}{'max/1 s':>9}{'final on screen':>17}  bars"
    )
    good = True
    for title, _rate, r in results:
        frames_ok = r["median"] <= 17 and r["p95"] <= 33
        final_ok = r["final_s"] <= 1.0
        msgs_ok = r["msgs_max"] <= DEFAULT_FPS
        good &= frames_ok and final_ok and msgs_ok
        rows = f"{ROWS[title]:,}"
        print(
            f"{rows:>7}{r['rate']:>10,.0f}{r['median']:>9.1f}ms{r['p95']:>9.1f}ms"
            f"{r['longtask']:>10.0f}ms{r['msgs_per_s']:>8.1f}{r['msgs_max']:>9.0f}"
            f"{r['final_s'] * 1000:>15.0f}ms"
            f"  frames {OK[frames_ok]}, final ≤ 1 s {OK[final_ok]}, ≤ {DEFAULT_FPS} msgs/s {OK[msgs_ok]}"
        )
    print(
        f"IOPub rate-limit message in Jupyter Server's log: {'yes' if iopub else 'no'} {OK[not iopub]}"
    )
    if errors:
        print(f"JavaScript errors in the page: {errors[:3]}")
    return good and not iopub and not errors


def main() -> None:
    results = [(rate, kernel_side(rate)) for rate in (1_000.0, 10_000.0, 50_000.0)]
    crowd = kernel_side(10_000.0, tables=30)
    kernel_ok = print_kernel(results, crowd)
    browser_ok = browser_side()
    print(f"\nwidgets: kernel bars {OK[kernel_ok]}, browser bars {OK[browser_ok]}")


if __name__ == "__main__":
    main()
    sys.exit(0)
