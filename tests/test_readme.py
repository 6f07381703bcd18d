"""The README's Python blocks run verbatim, several times: a newcomer's first lines always work.

The first block starts its own demo server (``rtnb.serve(demo=True)``), so every run meets a
fresh one, with no incident yet; the later blocks (widgets, the flight recorder) run in the
same namespace, in a temporary directory.
"""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
RUNS = 3


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_the_readme_has_the_ten_lines_first() -> None:
    blocks = python_blocks()
    assert blocks and "rtnb.serve(demo=True)" in blocks[0]
    code = [line for line in blocks[0].splitlines() if line.strip()]
    assert len(code) <= 10, code


@pytest.mark.slow
@pytest.mark.parametrize("run", range(RUNS))
def test_the_readme_python_blocks_run_verbatim_against_a_fresh_demo_server(
    run, capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the flight-recorder block writes a file
    namespace: dict[str, object] = {"__name__": "readme"}
    try:
        for number, block in enumerate(python_blocks(), 1):
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        mutation = namespace["m"]
        assert mutation.wait(timeout=10).status == "confirmed"  # type: ignore[attr-defined]
        rep = namespace["rep"]  # the flight recorder's file replays
        assert rep.wait(60) and len(rep.log) > 0  # type: ignore[attr-defined]
    finally:
        if "rep" in namespace:
            namespace["rep"].close()  # type: ignore[attr-defined]
        if "conn" in namespace:
            namespace["conn"].close()  # type: ignore[attr-defined]
        if "srv" in namespace:
            namespace["srv"].stop()  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert "inc-" in out and "lag p50" in out
