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
  equals the last value published for it.

``python -m bench.table_100k [--rate R] [--seconds S] [--profile FILE]``:
``--profile`` samples the kernel with py-spy (raw format, every thread) while
the stream runs; ``python -m bench._profile summary FILE`` reads it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import threading
import time
from typing import Any

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
_th.Thread(target=_sample, daemon=True).start()
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
            lp.page.evaluate(INSTRUMENT)  # frame intervals and long tasks in the page
            marker = f"final-{int(time.time())}"
            lp.page.evaluate(WATCH, [f'.rtnb-table[data-title="{TITLE}"]', ROW, marker])
            kernel_pid = int((work / "kernel.pid").read_text())
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    [str(pathlib.Path(sys.executable).with_name("py-spy")), "record", "--pid", str(kernel_pid), "-r", "100", "--threads",
                     "--nonblocking", "-d", str(int(args.seconds) + 2), "-f", "raw",
                     "-o", args.profile],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            expected = work / "expected.json"
            answer: list[dict[str, Any]] = []
            start_wall = time.time()
            server.send(
                {"cmd": "run", "rate": args.rate, "seconds": args.seconds, "batch": BATCH,
                 "marker": marker, "expected": str(expected)}
            )  # fmt: skip
            reader = threading.Thread(target=lambda: answer.append(server.read()))
            reader.start()
            cell_ms: list[float] = []
            while reader.is_alive():
                cell_ms.append(lp.page.evaluate(CELL_TIME))
                reader.join(0.5)
            run = answer[0]
            try:
                seen = lp.wait_js("() => window.__benchSeen", 60, "the final value on screen")
                final_s = seen / 1000.0 - run["last_publish"]
            except AssertionError:
                final_s = float("inf")
            received = lp.page.evaluate("() => window.__benchMsgs")
            apply_ms = sorted(lp.page.evaluate("() => window.__benchApplyMs"))
            frames, longtask = lp.page.evaluate(
                "() => { const s = window.__bench; s.running = false; s.obs.disconnect();"
                " return [s.frames.filter((f) => f > 0).sort((a, b) => a - b), s.longtask]; }"
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
        "server_stats": stats,
    }


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
    print(
        f"page           frames p50 {r['frame_p50']:.1f} ms, p95 {r['frame_p95']:.1f} ms; long tasks "
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
    print(f"screenshot: {r['shot']}")
    return pub_ok and applied_ok and final_ok and msgs_ok and cell_ok and lost_ok and not r["iopub"]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table_100k")
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--profile", type=pathlib.Path, default=None)
    args = parser.parse_args()
    result = measure(args)
    good = report(args, result)
    print(f"\ntable_100k: bars {OK[good]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
