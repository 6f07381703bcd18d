"""Run every benchmark module in ``bench/`` and print its table.

Each module is run as ``python -m bench.<name>`` in its own process so one
benchmark's memory and threads cannot skew the next. Modules whose names
start with ``_`` are helpers, not benchmarks. ``python -m bench pipeline``
runs only the named ones.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    names = sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))
    if argv:
        unknown = sorted(set(argv) - set(names))
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(names)}")
            return 2
        names = [n for n in names if n in argv]
    failed: list[str] = []
    for name in names:
        print(f"\n=== bench/{name}.py " + "=" * max(0, 60 - len(name)), flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"--- {name}: exit {rc} in {time.perf_counter() - start:.1f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
