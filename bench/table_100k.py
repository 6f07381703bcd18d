"""A StreamTable at 100,000 events/s offered, publisher to pixel (issue 22, item 1's last hop).

The reference server runs in a process of its own (memory store) with its
publisher (``bench/_table_server.py``): ``publish_many`` batches of 1,000 paced to
100k events/s for 10 s on one topic of 10,000 entities. The notebook's kernel
only runs the client and one ``StreamTable``, in JupyterLab + headless Chromium
(fresh profile). All share the machine's cores.

Printed, against the bars of issue 22 / DESIGN.md §6:

* events/s the publisher reached and the kernel's client applied (of 100k offered);
* the final value on screen: the last event of the run sets the first row's
  label; seconds from the return of the last ``publish_many`` to that label in
  the page's DOM (bar ≤ 1 s);
* widget messages/s (the most in any one-second window, bar ≤ fps);
* a cell's answer time while the stream runs: ``1+1`` executed every ~0.5 s
  from the page, request to reply (bar: the slowest ≤ 1 s);
* nothing lost: every row's ``n`` in the kernel's store and in the page's rows
  equals the last value published for it;
* where the cores go over the stream (``bench/_cpu.py``, from ``/proc``): share of a
  core and µs per published event of the server process, the kernel (per thread), the
  jupyter-server, each kind of Chromium process (renderer per thread) and this process.

``python -m bench.table_100k [--rate R] [--seconds S] [--profile FILE] [--js-profile]``:
``--profile`` samples the kernel with py-spy (raw format, every thread) while
the stream runs; ``python -m bench._profile summary FILE`` reads it.
``--raf-loop`` times every frame from a ``requestAnimationFrame`` loop (frame
intervals p50/p95, as ``bench/widgets.py``); by default the page only reports
frames longer than 50 ms (``long-animation-frame`` entries), as that loop makes
headless Chromium draw 60 frames a second, a cost the measured pipeline would share.
``--js-profile`` samples the page's JavaScript over the stream (Chromium's CPU
profiler) and prints the functions by self time.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from typing import Any

from bench import _cpu
from bench._table_server import Server
from bench.widgets import INSTRUMENT, _max_in_window
from rtnb.widgets.budget import DEFAULT_FPS

OK = {True: "PASS", False: "MISS"}
RATE = 100_000
SECONDS = 10.0
BATCH = 1_000
ENTITIES = 10_000
TITLE = "t100k"
ROW = "e00000"
LONG_FRAMES = """() => {
  const s = window.__bench = {frames: [], longtask: 0, long: [], running: false};
  s.obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) s.longtask += e.duration; });
  s.obs.observe({type: 'longtask'});
  s.loaf = new PerformanceObserver((list) => { for (const e of list.getEntries()) s.long.push(e.duration); });
  s.loaf.observe({type: 'long-animation-frame'});
}"""
#: seconds of the idle window measured before the stream (CPU with the table shown, no events)
IDLE_S = 2.0
#: processes whose threads the CPU table lists one by one
CPU_THREADS = ("kernel", "server", "jupyter-server", "chromium renderer", "chromium browser")
BIG_ROWS = 6_321  # distinct entities among 10,000 random events on 10,000: 10,000 x (1 - 1/e)  # the first row (insertion order): it carries the final marker

CELLS = [
    "import os, rtnb\nfrom rtnb.widgets import StreamTable\n"
    "open('kernel.pid', 'w').write(str(os.getpid()))\n"
    "conn = rtnb.connect(os.environ['RTNB_URL'], token=os.environ['RTNB_TOKEN'], timeout=30)\n"
    "topic = conn.subscribe('t100k')",
    "StreamTable(topic, title='t100k', height=400)",
]
SAMPLER = """
import threading as _th, time as _time
from rtnb.client.runtime import get_runtime as _rt
async def _cpu():
    return _time.thread_time()
_cpu0 = _rt().run(_cpu())
_samples, _stop = [], _th.Event()
def _sample(ts=topic.topic_state):
    while not _stop.is_set():
        _samples.append((_time.time(), ts.applied))
        _stop.wait(0.02)
_th.Thread(target=_sample, daemon=True, name="bench-sampler").start()
import json as _json
_json.dump({t.native_id: t.name for t in _th.enumerate()}, open('threads.json.tmp', 'w'))
os.replace('threads.json.tmp', 'threads.json')
"""
CHECK = """
import json as _json
_stop.set()
_cpu1 = _rt().run(_cpu())
_summary = conn.log.summary()
_expected = _json.load(open({expected!r}))
_wrong = sum(1 for _e, _n in _expected.items() if (topic.get(_e) or {{}}).get('n') != _n)
_json.dump({{"samples": _samples, "wrong": _wrong, "status": topic.freshness.status,
            "gaps": topic.topic_state.gaps, "cpu": _cpu1 - _cpu0,
            "outcomes": {{k: int(v) for k, v in _summary.get("outcomes", {{}}).items() if v}},
            "reconnects": int(_summary.get("reconnects", 0)), "transport": str(conn.state)}},
           open({out!r} + '.tmp', 'w'))
os.replace({out!r} + '.tmp', {out!r})
"""
STORE = f"document.querySelector('.rtnb-table[data-title=\"{TITLE}\"]').parentElement.__rtnb"
CELL_TIME = """async () => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const t0 = performance.now();
  await k.requestExecute({code: '1+1', silent: false, store_history: false}).done;
  return performance.now() - t0;
}"""
WATCH = """([sel, row, marker]) => { const t = document.querySelector(sel);
  window.__benchSeen = null;
  const check = () => { const r = t.querySelector(`tr[data-id="${row}"]`);
    if (r && r.textContent.includes(marker)) { window.__benchSeen = Date.now(); o.disconnect(); } };
  const o = new MutationObserver(check);
  o.observe(t, {subtree: true, childList: true, characterData: true}); }"""
BIG_DIFF = f"""async (n) => {{ const v = {STORE}; const st = v.store;
  const rows = Array.from(st.rows.values()).slice(0, n);
  const data = {{u: rows.map((r) => [r.id, r.f, ...r.v]), s: [], d: []}};
  const t0 = performance.now();
  st.apply({{t: "diff", fresh: st.fresh}}, data);
  const t1 = performance.now();
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  return [t1 - t0, performance.now() - t1]; }}"""
WRONG_ON_SCREEN = f"""(expected) => {{ const st = {STORE}.store; const at = st.columns.indexOf('n');
  let wrong = 0; for (const [id, n] of Object.entries(expected)) {{
    const r = st.rows.get(id); if (!r || r.v[at] !== n) wrong += 1; }}
  return wrong; }}"""


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from rtnb.widgets.lab import Lab
    from tests.widgets.lab_harness import (
        ARTIFACTS,
        LabPage,
        chromium_page,
        new_workdir,
        require_chromium,
        wait_py,
        write_notebook,
    )

    require_chromium()
    work = new_workdir("rtnb-bench100k-")
    write_notebook(work / "bench.ipynb", CELLS)
    server = Server(ENTITIES)
    try:
        env = {"RTNB_URL": server.hello["url"], "RTNB_TOKEN": server.hello["token"]}
        with (
            Lab(work, work / ".state", env=env, expose_app=True) as lab,
            chromium_page(work / ".chromium", width=1280, height=900) as (_ctx, page),
        ):
            lp = LabPage(page)
            lp.open(lab.notebook_url("bench.ipynb"))
            lp.run_all()
            lp.wait_js(
                f"() => {{ const v = {STORE}; return v && v.visible && v.order.length === {ENTITIES}; }}",
                120,
                "the table filled",
            )
            lp.kernel_idle()
            lp.execute(SAMPLER)
            lp.kernel_idle()
            lp.page.evaluate(  # timestamp every message the widget receives
                f"() => {{ const st = {STORE}.store; window.__benchMsgs = [];"
                " const apply = st.apply.bind(st);"
                " window.__benchApplyMs = [];"
                " st.apply = (m, d) => { const t = performance.now(); window.__benchMsgs.push(t);"
                " const r = apply(m, d); window.__benchApplyMs.push(performance.now() - t); return r; }; }"
            )
            marker = f"final-{int(time.time())}"
            lp.page.evaluate(WATCH, [f'.rtnb-table[data-title="{TITLE}"]', ROW, marker])
            kernel_pid = int((work / "kernel.pid").read_text())
            answer: list[dict[str, Any]] = []
            roots = {"server": server.proc.pid, "jupyter-server": lab.proc.pid,
                     "kernel": kernel_pid, "bench": os.getpid()}  # fmt: skip
            threads = work / "threads.json"  # written by SAMPLER
            wait_py(lambda: threads.exists() and threads.read_text(), 60, "the kernel's threads")
            names = {int(k): v for k, v in json.loads(threads.read_text()).items()}
            cpu: list[_cpu.Snap] = []
            idle: tuple[_cpu.Snap, _cpu.Snap] | None = None
            # long frames and tasks in the page; --raf-loop: every frame's interval, from a
            # requestAnimationFrame loop, which makes Chromium draw 60 frames a second
            lp.page.evaluate(INSTRUMENT if args.raf_loop else LONG_FRAMES)
            if _cpu.available():  # the processes idle for 2 s (the table shown), then streaming
                first = _cpu.snap(roots, names)
                time.sleep(IDLE_S)
                idle = (first, _cpu.snap(roots, names))
            if idle is not None:
                cpu.append(_cpu.snap(roots, names))
            perf = page.context.new_cdp_session(page)  # the renderer's main thread, by kind
            perf.send("Performance.enable")
            metrics = [page_metrics(perf)]
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [str(pathlib.Path(sys.executable).with_name("py-spy")), "record", "--pid", str(kernel_pid), "-r", "100", "--threads",
                     "--nonblocking", "-d", str(int(args.seconds) + 2), "-f", "raw",
                     "-o", args.profile],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            expected = work / "expected.json"

            def read_run() -> None:
                answer.append(server.read())
                if cpu:  # the stream's end
                    cpu.append(_cpu.snap(roots, names))

            tracer = None
            if args.trace:  # Chromium's trace of the stream (devtools.timeline and toplevel)
                tracer = page.context.new_cdp_session(page)
                tracer.send("Tracing.start", {"transferMode": "ReturnAsStream",
                    "traceConfig": {"includedCategories": TRACE_CATEGORIES}})  # fmt: skip
            cdp = None
            if args.js_profile:  # the page's JS, sampled every 0.5 ms over the stream
                cdp = page.context.new_cdp_session(page)
                cdp.send("Profiler.enable")
                cdp.send("Profiler.setSamplingInterval", {"interval": 500})
                cdp.send("Profiler.start")
            start_wall = time.time()
            server.send(
                {"cmd": "run", "rate": args.rate, "seconds": args.seconds, "batch": BATCH,
                 "marker": marker, "expected": str(expected)}
            )  # fmt: skip
            reader = threading.Thread(target=read_run)
            reader.start()
            cell_ms: list[float] = []
            while reader.is_alive():
                cell_ms.append(lp.page.evaluate(CELL_TIME))
                reader.join(0.5)
            run = answer[0]
            metrics.append(page_metrics(perf))  # (sync Playwright: on this thread only)
            trace_top: list[str] = []
            if tracer is not None:
                done: list[Any] = []
                tracer.on("Tracing.tracingComplete", lambda e: done.append(e))
                tracer.send("Tracing.end")
                for _ in range(600):  # events arrive while Playwright runs: wait in the page
                    if done:
                        break
                    page.wait_for_timeout(100)
                handle = done[0]["stream"]
                chunks = []
                while True:
                    got = tracer.send("IO.read", {"handle": handle, "size": 1 << 22})
                    chunks.append(got["data"])
                    if got.get("eof"):
                        break
                tracer.send("IO.close", {"handle": handle})
                args.trace.write_text("".join(chunks))
                trace_top = trace_self(json.loads("".join(chunks)))
            js_profile = cdp.send("Profiler.stop")["profile"] if cdp is not None else None
            try:
                seen = lp.wait_js("() => window.__benchSeen", 60, "the final value on screen")
                final_s = seen / 1000.0 - run["last_publish"]
            except AssertionError:
                final_s = float("inf")
            received = lp.page.evaluate("() => window.__benchMsgs")
            apply_ms = sorted(lp.page.evaluate("() => window.__benchApplyMs"))
            frames, longtask, long_frames = lp.page.evaluate(
                "() => { const s = window.__bench; s.running = false; s.obs.disconnect();"
                " if (s.loaf) s.loaf.disconnect();"
                " return [s.frames.filter((f) => f > 0).sort((a, b) => a - b), s.longtask,"
                " s.long || []]; }"
            )
            out = work / "kernel.json"
            lp.execute(CHECK.format(expected=str(expected), out=str(out)))
            kernel = wait_py(
                lambda: out.exists() and json.loads(out.read_text()), 60, "kernel check"
            )
            want = json.loads(expected.read_text())
            wrong_screen = lp.page.evaluate(WRONG_ON_SCREEN, want)
            # the rows one tick at 100k/s carries (10,000 events on 10,000 entities), as is
            big_apply, big_render = lp.page.evaluate(BIG_DIFF, BIG_ROWS)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "table_100k.png"
            page.locator(f'.rtnb-table[data-title="{TITLE}"]').screenshot(path=str(shot))
            if profiler is not None:
                profiler.wait(60)
            log = lab.log_text()
            errors = lp.errors
        stats = server.ask({"cmd": "stats"})
    finally:
        server.stop()
    samples = kernel["samples"]
    base = samples[0][1]
    applied = samples[-1][1] - base
    done_at = next((t for t, a in samples if a == samples[-1][1]), samples[-1][0])
    return {
        "run": run,
        "start_wall": start_wall,
        "applied": applied,
        "applied_rate": applied / max(1e-9, done_at - start_wall),
        "apply_lag": done_at - run["last_publish"],
        "final_s": final_s,
        "msgs_max": _max_in_window([t / 1000.0 for t in received], 1.0),
        "msgs_per_s": len(received) / max(1e-9, (received[-1] - received[0]) / 1000.0)
        if len(received) > 1
        else 0.0,
        "cell_ms": cell_ms,
        "frame_p50": frames[len(frames) // 2] if frames else float("nan"),
        "frame_p95": frames[int(0.95 * (len(frames) - 1))] if frames else float("nan"),
        "longtask": longtask,
        "long_frames": sorted(long_frames),
        "apply_ms_max": apply_ms[-1] if apply_ms else 0.0,
        "apply_ms_sum": sum(apply_ms),
        "big_apply": big_apply,
        "big_render": big_render,
        "kernel_us": kernel["cpu"] / max(1, applied) * 1e6,
        "wrong_kernel": kernel["wrong"],
        "wrong_screen": wrong_screen,
        "iopub": "IOPub message rate exceeded" in log,
        "errors": errors,
        "shot": shot,
        "kernel_pid": kernel_pid,
        "kernel": kernel,
        "page_metrics": metrics,
        "trace_top": trace_top,
        "js_profile": js_top(js_profile) if js_profile else [],
        "cpu": _cpu.breakdown(cpu[0], cpu[1], run["published"], idle=idle, threads_of=CPU_THREADS)
        if len(cpu) == 2
        else [],
        "server_stats": stats,
    }


#: Chromium's cumulative main-thread timings (CDP ``Performance.getMetrics``), seconds
PAGE_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


def page_metrics(cdp: Any) -> dict[str, float]:
    got = cdp.send("Performance.getMetrics")["metrics"]
    return {"at": time.monotonic(), **{m["name"]: float(m["value"]) for m in got}}


def page_split(a: dict[str, float], b: dict[str, float], events: int) -> str:
    """The page's main thread over the stream (to up to ~0.5 s after it), by kind: tasks
    in all, of them script, layout, style recalculation, and the rest (painting, message
    handling, ...)."""
    seconds = b["at"] - a["at"]
    d = {k: b.get(k, 0.0) - a.get(k, 0.0) for k in PAGE_METRICS}
    rest = d["TaskDuration"] - d["ScriptDuration"] - d["LayoutDuration"] - d["RecalcStyleDuration"]
    parts = [("script", d["ScriptDuration"]), ("layout", d["LayoutDuration"]),
             ("style", d["RecalcStyleDuration"]), ("other", rest)]  # fmt: skip
    split = ", ".join(f"{name} {v / seconds:.2f}" for name, v in parts)
    return (
        f"  page main thread (CDP, {seconds:.1f} s): tasks {d['TaskDuration'] / seconds:.2f} of a core "
        f"({d['TaskDuration'] / max(1, events) * 1e6:.2f} µs/event): {split}"
    )


TRACE_CATEGORIES = ["devtools.timeline", "toplevel", "v8.execute", "blink", "ipc", "mojom"]


def trace_self(trace: dict[str, Any] | list[Any], top: int = 25) -> list[str]:
    """Self time of each complete event's name on the renderer's main thread."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    main = {(e["pid"], e["tid"]) for e in events
            if e.get("ph") == "M" and e.get("name") == "thread_name"
            and e.get("args", {}).get("name") == "CrRendererMain"}  # fmt: skip
    spans = sorted(
        ((e["pid"], e["tid"]), e["ts"], e["ts"] + e.get("dur", 0), e["name"])
        for e in events
        if e.get("ph") == "X" and (e["pid"], e["tid"]) in main and "dur" in e
    )
    own: dict[str, float] = {}
    stack: list[list[Any]] = []  # [end, name, child time]
    last = None
    for key, t0, t1, name in spans:
        if key != last:
            stack, last = [], key
        while stack and stack[-1][0] <= t0:
            end, nm, child, start = stack.pop()
            own[nm] = own.get(nm, 0.0) + (end - start) - child
        if stack:
            stack[-1][2] += t1 - t0
        stack.append([t1, name, 0.0, t0])
    for end, nm, child, start in stack:
        own[nm] = own.get(nm, 0.0) + (end - start) - child
    out = ["renderer main thread, trace events by self time (ms):"]
    for nm, us in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {us / 1000:>8,.0f}  {nm}")
    return out


def js_top(profile: dict[str, Any], top: int = 25) -> list[str]:
    """The page's JS functions by self time (a CDP CPU profile), the busiest first."""
    spent: dict[str, float] = {}
    total = (profile["endTime"] - profile["startTime"]) / 1000.0  # ms
    hits = sum(n.get("hitCount", 0) for n in profile["nodes"]) or 1
    for node in profile["nodes"]:
        frame = node["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1].split("?")[0][:40]
        key = f"{frame['functionName'] or '(anonymous)'} {where}:{frame['lineNumber'] + 1}"
        if not frame["url"]:
            key = frame["functionName"] or "(anonymous)"
        spent[key] = spent.get(key, 0.0) + node.get("hitCount", 0) * total / hits
    lines = [f"page JS over the stream ({total:,.0f} ms sampled), self time:"]
    for key, ms in sorted(spent.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {ms:>8,.0f} ms  {key}")
    return lines


def report(args: argparse.Namespace, r: dict[str, Any]) -> bool:
    run = r["run"]
    offered = args.rate
    published = run["published"] / run["seconds"]
    print(
        f"StreamTable at {offered:,.0f} events/s offered for {args.seconds:g} s: one topic of "
        f"{ENTITIES:,} entities, publish_many batches of {BATCH:,}, server + publisher in their own "
        "process (memory store), kernel = client + StreamTable, JupyterLab + headless Chromium"
    )
    pub_ok = published >= 0.95 * offered
    print(
        f"published      {published:>10,.0f} events/s = {published / offered:.2f}x offered"
        f"  ({run['published']:,} events; publish_many median {run['call_ms_median']:.1f} ms per "
        f"{BATCH:,}; server loop {run['server_us']:.1f} µs/event, publisher {run['publisher_us']:.1f}"
        f" µs/event; the server process used {run['process_cpu']:.2f} of a core)  {OK[pub_ok]}"
    )
    applied_ok = r["applied"] == run["published"] and r["applied_rate"] >= 0.95 * offered
    if r["applied"] == run["published"]:
        lag = f"the last applied {r['apply_lag'] * 1000:.0f} ms after the last publish"
    else:  # a resync from a snapshot skips events: the count stops short of the last one
        lag = (
            f"{run['published'] - r['applied']:,} not applied one by one: resynced from a snapshot"
        )
    print(
        f"applied        {r['applied_rate']:>10,.0f} events/s = {r['applied_rate'] / offered:.2f}x offered"
        f", {r['applied_rate'] / published:.2f}x published ({r['applied']:,} events; {lag})"
        f"  {OK[applied_ok]}"
    )
    print(
        f"kernel         {r['kernel_us']:.1f} µs of the client's runtime thread per applied event "
        f"(client + StreamTable feed): one core would apply {1e6 / r['kernel_us']:,.0f} events/s"
    )
    final_ok = r["final_s"] <= 1.0
    print(
        f"final on screen {r['final_s'] * 1000:>9,.0f} ms after the last publish (bar ≤ 1,000 ms)  {OK[final_ok]}"
    )
    msgs_ok = r["msgs_max"] <= DEFAULT_FPS
    print(
        f"widget msgs    {r['msgs_max']:>10.0f} in the busiest second, {r['msgs_per_s']:.1f}/s on average"
        f" (bar ≤ fps = {DEFAULT_FPS})  {OK[msgs_ok]}"
    )
    if not args.raf_loop:
        lf = r["long_frames"]
        frames = (
            f"{len(lf)} frames took > 50 ms (long animation frames), "
            f"{sum(lf):,.0f} ms in all, {lf[-1] if lf else 0:.0f} ms at most"
        )
    else:
        frames = f"frames p50 {r['frame_p50']:.1f} ms, p95 {r['frame_p95']:.1f} ms"
    print(
        f"page           {frames}; long tasks "
        f"{r['longtask']:,.0f} ms in all; the table's store applied its messages in "
        f"{r['apply_ms_sum']:,.0f} ms in all, {r['apply_ms_max']:.1f} ms at most (information)"
    )
    print(
        f"page           a {BIG_ROWS:,}-row diff (one tick at 100k/s) applied in {r['big_apply']:.1f} ms, "
        f"then {r['big_render']:.1f} ms to the second frame after it (information)"
    )
    cells = sorted(r["cell_ms"])
    cell_ok = bool(cells) and cells[-1] <= 1000
    print(
        f"cell answer    {cells[-1] if cells else float('nan'):>10,.0f} ms at most, median "
        f"{cells[len(cells) // 2] if cells else float('nan'):,.0f} ms over {len(cells)} cells run "
        f"meanwhile (bar ≤ 1,000 ms)  {OK[cell_ok]}"
    )
    lost_ok = r["wrong_kernel"] == 0 and r["wrong_screen"] == 0
    print(
        f"nothing lost   {r['wrong_kernel']} of {ENTITIES:,} entities wrong in the kernel's store, "
        f"{r['wrong_screen']} in the page's rows  {OK[lost_ok]}"
    )
    print(
        f"kernel log     outcomes {r['kernel']['outcomes']}, reconnects {r['kernel']['reconnects']}"
    )
    stats = r["server_stats"]
    print(
        f"server         slow consumers cut {stats['slow_consumers']}, a live topic fell behind its "
        f"send queue (read from the log instead) {stats.get('fell_behind', 0)} times"
    )
    if r["kernel"]["status"] != "live" or r["kernel"]["gaps"]:
        print(
            f"kernel topic: {r['kernel']['status']}, gaps {r['kernel']['gaps']}, {r['kernel']['transport']}"
        )
    print(f"IOPub rate-limit message: {'yes' if r['iopub'] else 'no'}  {OK[not r['iopub']]}")
    if r["errors"]:
        print(f"JavaScript errors: {r['errors'][:3]}")
    for line in r["cpu"]:
        print(line)
    if len(r["page_metrics"]) == 2:
        print(page_split(*r["page_metrics"], run["published"]))
    for line in [*r["trace_top"], *r["js_profile"]]:
        print(line)
    print(f"screenshot: {r['shot']}")
    return pub_ok and applied_ok and final_ok and msgs_ok and cell_ok and lost_ok and not r["iopub"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_100k")
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--profile", type=pathlib.Path, default=None)
    parser.add_argument(
        "--raf-loop",
        action="store_true",
        help="time every frame from a requestAnimationFrame loop (costs the page CPU)",
    )
    parser.add_argument("--trace", type=pathlib.Path, default=None, help="Chromium trace")
    parser.add_argument("--js-profile", action="store_true", help="sample the page's JS (CDP)")
    args = parser.parse_args()
    result = measure(args)
    good = report(args, result)
    print(f"\ntable_100k: bars {OK[good]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
