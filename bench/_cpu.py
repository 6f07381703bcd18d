"""Where the cores go: CPU per process and per thread over a window, read from ``/proc``.

``snap(roots)`` reads ``utime + stime`` of every process in the trees under
``roots`` (``{label: pid}``; each descendant is labelled by the nearest root
above it and, for Chromium, by its ``--type``) and of each of their threads,
plus the machine's total from ``/proc/stat``; ``table(a, b, events)`` prints
the difference as shares of a core and µs per event. Linux only (``available()``).

Threads are summed by name within a process (Chromium and Python pools reuse
names), so a row is e.g. ``kernel / IOPub``. Processes that started during the
window count from zero; those that ended during it are not seen.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = "/proc"


def available() -> bool:
    return os.path.exists(f"{PROC}/self/task")


def _stat(path: str) -> tuple[str, int, int] | None:
    """``(comm, ppid, utime + stime ticks)`` of one /proc stat file; None if gone."""
    try:
        with open(path, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    left, right = data.index("("), data.rindex(")")
    comm = data[left + 1 : right]
    rest = data[right + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15
    return comm, int(rest[1]), int(rest[11]) + int(rest[12])


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            # Chromium rewrites its children's argv as one space-separated string
            return f.read().decode(errors="replace").replace("\0", " ").split()
    except OSError:
        return []


def _kind(comm: str, cmd: list[str]) -> str:
    """A short name of a process: Chromium's ``--type`` (renderer, gpu-process, ...)."""
    for arg in cmd:
        if arg.startswith("--type="):
            kind = arg.removeprefix("--type=")
            if kind == "utility":
                sub = next((a for a in cmd if a.startswith("--utility-sub-type=")), "")
                kind = "utility:" + sub.rsplit(".", 1)[-1] if sub else kind
            return "chromium " + kind
    if "chrom" in comm.lower() or any("chrom" in os.path.basename(a) for a in cmd[:1]):
        return "chromium browser"
    return comm


@dataclass
class Snap:
    at: float
    total: int  # busy ticks of the machine (all cores)
    ncpu: int
    #: (label, pid) -> ticks of the process
    procs: dict[tuple[str, int], int] = field(default_factory=dict)
    #: (label, pid, thread name) -> ticks, summed over threads of that name
    threads: dict[tuple[str, int, str], int] = field(default_factory=dict)


def _machine() -> tuple[int, int]:
    with open(f"{PROC}/stat") as f:
        lines = f.read().splitlines()
    cpu = [int(x) for x in lines[0].split()[1:]]
    idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0)  # idle + iowait
    busy = sum(cpu[:8]) - idle  # guest time is already counted in user
    ncpu = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, ncpu


def snap(roots: dict[str, int], names: dict[int, str] | None = None) -> Snap:
    """CPU ticks of every process under ``roots`` and of their threads, now. ``names``:
    thread ids to names (Python < 3.14 leaves its threads' OS names as the process's);
    an unnamed thread is ``main`` or ``<comm>:<tid>``."""
    names = names or {}
    parent: dict[int, int] = {}
    comms: dict[int, str] = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            st = _stat(f"{PROC}/{name}/stat")
            if st is not None:
                comms[int(name)], parent[int(name)] = st[0], st[1]
    by_pid = {pid: label for label, pid in roots.items()}

    def label_of(pid: int) -> str | None:
        seen = 0
        while pid > 1 and seen < 64:
            if pid in by_pid:
                return by_pid[pid]
            pid = parent.get(pid, 0)
            seen += 1
        return None

    busy, ncpu = _machine()
    out = Snap(time.monotonic(), busy, ncpu)
    for pid in comms:
        label = label_of(pid)
        if label is None:
            continue
        if pid not in by_pid:  # a descendant: name it by what it is
            kind = _kind(comms[pid], _cmdline(pid))
            label = kind if kind.startswith("chromium") else f"{label}/{kind}"
        try:
            tids = os.listdir(f"{PROC}/{pid}/task")
        except OSError:
            continue
        total = 0
        for tid in tids:
            st = _stat(f"{PROC}/{pid}/task/{tid}/stat")
            if st is None:
                continue
            total += st[2]
            name = names.get(int(tid)) or st[0]
            if int(tid) == pid:
                name = f"main ({name})"
            elif name == comms[pid]:
                name = f"{name}:{tid}"
            key = (label, pid, name)
            out.threads[key] = out.threads.get(key, 0) + st[2]
        out.procs[(label, pid)] = total
    return out


def _by_label(
    a: Snap, b: Snap
) -> tuple[dict[str, float], dict[str, int], dict[tuple[str, str], float]]:
    procs: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for key, ticks in b.procs.items():
        procs[key[0]] += ticks - a.procs.get(key, 0)
        counts[key[0]] += 1
    threads: dict[tuple[str, str], float] = defaultdict(float)
    for tkey, t in b.threads.items():
        threads[tkey[0], tkey[2]] += t - a.threads.get(tkey, 0)
    return procs, counts, threads


def breakdown(
    a: Snap,
    b: Snap,
    events: int,
    *,
    idle: tuple[Snap, Snap] | None = None,
    threads_of: tuple[str, ...] = (),
    min_share: float = 0.01,
) -> list[str]:
    """Lines of a table: share of a core and µs per event of each labelled process (Chromium's
    processes of one type summed), the threads of ``threads_of`` labels, and the machine;
    with ``idle`` (two snaps of a window without events), each row's share then too."""
    seconds = max(1e-9, b.at - a.at)
    idle_s = max(1e-9, idle[1].at - idle[0].at) if idle else 1.0
    iprocs, _, ithreads = _by_label(*idle) if idle else ({}, {}, {})

    def share(ticks: float) -> float:
        return ticks / TICK / seconds

    def ishare(ticks: float) -> str:
        return f"{ticks / TICK / idle_s:>6.2f}" if idle else ""

    def us(ticks: float) -> float:
        return ticks / TICK / max(1, events) * 1e6

    procs, counts, threads = _by_label(a, b)
    machine = b.total - a.total
    imachine = idle[1].total - idle[0].total if idle else 0
    lines = [
        f"CPU over the {seconds:.1f} s stream, {events:,} events published "
        f"({b.ncpu} cores: {share(machine):.2f} cores busy in all, "
        f"{us(machine):.1f} µs of CPU per event)"
        + (f"; idle: the {idle_s:.1f} s before it" if idle else ""),
        f"  {'process / thread':<44} {'cores':>6} {'µs/event':>9}" + ("   idle" if idle else ""),
    ]
    ours = iours = 0.0
    for label, ticks in sorted(procs.items(), key=lambda kv: -kv[1]):
        ours += ticks
        iours += iprocs.get(label, 0.0)
        if share(ticks) < min_share and label not in threads_of:
            continue
        n = f" (x{counts[label]})" if counts[label] > 1 else ""
        lines.append(
            f"  {label + n:<44} {share(ticks):>6.2f} {us(ticks):>9.2f} "
            + ishare(iprocs.get(label, 0.0))
        )
        if label in threads_of:
            named = sorted(
                ((k[1], t) for k, t in threads.items() if k[0] == label), key=lambda kv: -kv[1]
            )
            for name, t in named:
                if share(t) >= min_share:
                    lines.append(
                        f"    {name:<42} {share(t):>6.2f} {us(t):>9.2f} "
                        + ishare(ithreads.get((label, name), 0.0))
                    )
    rest = machine - ours
    lines.append(
        f"  {'everything else on the machine':<44} {share(rest):>6.2f} {us(rest):>9.2f} "
        + ishare(imachine - iours)
    )
    return lines
