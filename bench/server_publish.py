"""The server process's publish path at 100k events/s, headless (issue 22, item 1).

``bench/table_100k.py`` without the browser: the reference server and its publisher in
a process of their own (``bench/_table_server.py``: memory store, one topic of 10,000
entities, ``publish_many`` batches of 1,000 paced to ``--rate`` events/s), and one raw
``websockets`` subscriber in this process that decodes each frame (``msgspec``,
untyped) and counts its events. Per round it prints the events/s published, the CPU
µs per event of the server loop thread and of the publisher thread (``thread_time``
read on each; *in call*: the publisher's CPU inside ``publish_many``, the rest is the
bench making the events), the server process's CPU (cores) and how long after the last
publish the reader had them all.
The bar: the server process publishes ``--rate`` (100,000/s), i.e. loop + publisher
≤ ~9 µs per event on one core.

``--tree DIR`` imports rtnb from another checkout in the server process (A/B against main;
the publisher loop stays this tree's ``bench/_table_server.py``);
``--profile FILE`` samples the server process with py-spy (not a dependency:
``pip install py-spy``), read with ``python -m bench._profile summary FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import msgspec
from websockets.asyncio.client import connect as ws_connect

TOPIC = "t100k"


class Reader:
    """A raw WebSocket subscriber on its own thread: decodes every frame, counts events."""

    def __init__(self, url: str, token: str) -> None:
        self.got = 0
        self.cpu = 0.0
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._main, args=(url, token), daemon=True)
        self._thread.start()

    def _main(self, url: str, token: str) -> None:
        try:
            asyncio.run(self._run(url, token))
        except BaseException as exc:  # reported by the caller
            self.failed = exc
            self.ready.set()

    async def _run(self, url: str, token: str) -> None:
        decode = msgspec.json.decode
        async with ws_connect(url, max_size=None, compression=None) as ws:
            await ws.send(json.dumps({"op": "authenticate", "token": token}))
            await ws.recv()
            await ws.send(json.dumps({"op": "subscribe", "topic": TOPIC}))
            cpu0 = time.thread_time()
            async for msg in ws:
                decode(msg)
                if isinstance(msg, str):
                    if not self.ready.is_set() and '"op":"subscribed"' in msg:
                        self.ready.set()
                    self.got += msg.count('"op":"event"')
                self.cpu = time.thread_time() - cpu0
                if self._stop:
                    return

    def wait_for(self, n: int, deadline: float) -> bool:
        while self.got < n and time.monotonic() < deadline and self.failed is None:
            time.sleep(0.005)
        return self.got >= n

    def stop(self) -> None:
        self._stop = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--tree", default=None, help="checkout to run the server process from")
    parser.add_argument("--profile", default=None, help="py-spy raw output of the server process")
    args = parser.parse_args(argv)
    tree = pathlib.Path(args.tree or pathlib.Path(__file__).parent.parent).resolve()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # This tree's bench/_table_server.py (the same publisher loop for A and B), importing
    # rtnb from ``tree``.
    server = pathlib.Path(__file__).with_name("_table_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(server), str(args.entities)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tree,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    spy = None
    try:
        hello = json.loads(proc.stdout.readline())
        url = "ws" + hello["url"][4:] + "/ws"
        reader = Reader(url, hello["token"])
        reader.ready.wait(20)
        if reader.failed is not None:
            raise reader.failed
        if args.profile:
            spy_args = ["record", "-r", "250", "-f", "raw", "--threads", "--gil"]
            spy_args += ["--pid", str(proc.pid)]
            spy = subprocess.Popen(
                ["py-spy", *spy_args, "-o", args.profile],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        print(f"server process: {tree}  (load {os.getloadavg()[0]:.2f})")
        print(
            f"{'round':>5}{'published/s':>13}{'of rate':>9}{'loop µs':>9}{'pub µs':>8}"
            f"{'(in call)':>10}{'sum µs':>8}{'cores':>7}{'call ms':>9}{'reader lag ms':>15}"
        )
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.rounds):
                before = reader.got
                cmd = {
                    "cmd": "run",
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "batch": 1000,
                    "marker": f"m{i}",
                    "expected": os.path.join(tmp, "expected.json"),
                }
                proc.stdin.write(json.dumps(cmd) + "\n")
                proc.stdin.flush()
                out: dict[str, Any] = json.loads(proc.stdout.readline())
                done = reader.wait_for(before + out["published"], time.monotonic() + 30)
                lag = (time.time() - out["last_publish"]) * 1000
                rate = out["published"] / out["seconds"]
                print(
                    f"{i:>5}{rate:>13,.0f}{rate / args.rate:>8.2f}×{out['server_us']:>9.2f}"
                    f"{out['publisher_us']:>8.2f}{out.get('publish_many_us', float('nan')):>10.2f}"
                    f"{out['server_us'] + out['publisher_us']:>8.2f}"
                    f"{out['process_cpu']:>7.2f}{out['call_ms_median']:>9.1f}"
                    f"{lag if done else float('nan'):>15.0f}",
                    flush=True,
                )
                gc_us, gc_runs = out.get("gc_us"), out.get("gc_runs")
                if gc_us is not None:
                    print(
                        f"{'':>5}  garbage collector: {sum(gc_us):.2f} µs/event (by generation "
                        f"{', '.join(f'{u:.2f}' for u in gc_us)}; runs {gc_runs})"
                    )
        print(f"reader: {reader.cpu / max(1, reader.got) * 1e6:.2f} µs/event over {reader.got:,}")
        reader.stop()
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        if proc.poll() is None:
            proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
            proc.stdin.flush()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
