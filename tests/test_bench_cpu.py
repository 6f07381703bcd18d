"""bench/_cpu.py: CPU per process and thread from /proc, as bench/table_100k prints it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import _cpu

pytestmark = pytest.mark.skipif(not _cpu.available(), reason="needs Linux /proc")

SPIN = """
import os, subprocess, sys, threading, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
def spin():
    x = 0
    while True:
        x += 1
t = threading.Thread(target=spin, name="spinner", daemon=True)
t.start()
print(t.native_id, child.pid, flush=True)
time.sleep(60)
"""


def test_stat_reads_a_comm_with_spaces_and_parentheses(tmp_path):
    # fields after the comm: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime ...
    stat = tmp_path / "stat"
    stat.write_text("4242 (py (x) y) S 17 1 1 0 -1 0 0 0 0 0 250 50 0 0 20 0 3 0\n")
    assert _cpu._stat(str(stat)) == ("py (x) y", 17, 300)
    assert _cpu._stat(str(tmp_path / "gone")) is None


def test_chromium_processes_are_named_by_their_type():
    # Chromium rewrites a child's argv as one space-separated string
    assert _cpu._kind("chromium", ["/usr/lib/chromium/chromium", "--type=renderer", "--x"]) == (
        "chromium renderer"
    )
    cmd = ["chromium", "--type=utility", "--utility-sub-type=network.mojom.NetworkService"]
    assert _cpu._kind("chromium", cmd) == "chromium utility:NetworkService"
    assert _cpu._kind("chromium", ["/usr/lib/chromium/chromium", "--headless"]) == (
        "chromium browser"
    )
    assert _cpu._kind("python3", ["python3", "-m", "x"]) == "python3"


def test_a_spinning_thread_is_charged_to_its_process_and_name():
    child = 0
    proc = subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        tid, child = map(int, proc.stdout.readline().split())
        roots = {"spin": proc.pid, "me": os.getpid()}
        names = {tid: "spinner"}
        a = _cpu.snap(roots, names)
        deadline = time.monotonic() + 30
        while True:  # until the spinner has run 0.3 s of CPU
            b = _cpu.snap(roots, names)
            if (
                b.threads.get(("spin", proc.pid, "spinner"), 0)
                - a.threads.get(("spin", proc.pid, "spinner"), 0)
                >= 0.3 * _cpu.TICK
            ):
                break
            assert time.monotonic() < deadline, "the spinner got no CPU in 30 s"
        assert ("spin", proc.pid) in b.procs
        assert (f"spin/{_cpu._stat(f'/proc/{child}/stat')[0]}", child) in b.procs  # type: ignore[index]
        assert ("me", proc.pid) not in b.procs  # the nearest root names a process
        lines = _cpu.breakdown(a, b, 1000, idle=(a, a), threads_of=("spin",), min_share=0.0)
        text = "\n".join(lines)
        assert "1,000 events published" in text
        spin_line = next(line for line in lines if line.lstrip().startswith("spin "))
        spinner = next(line for line in lines if line.lstrip().startswith("spinner "))
        share, us, idle = spinner.split()[-3:]
        assert float(share) > 0.1 and float(us) >= 300.0 and float(idle) == 0.0
        assert float(spin_line.split()[-3]) >= float(share)
        assert lines[-1].lstrip().startswith("everything else on the machine")
    finally:
        proc.kill()
        proc.wait()
        if child:
            os.kill(child, 9)
