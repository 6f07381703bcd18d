"""The public surface is visible: only public modules have an ``__all__`` (issue 21).

Public modules are the ones DESIGN.md §2 names ("Public modules: …"); every other
module of rtnb is implementation: it has no ``__all__``, and its names, though other
rtnb packages may import them (``tests/test_layers.py``), promise nothing to users.
A public module's ``__all__`` is pinned here, so a public name cannot disappear (or
appear) without this list, and DESIGN.md §2, changing with it.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rtnb"

#: module -> its ``__all__`` (space-separated), as DESIGN.md §2 documents it
PUBLIC: dict[str, str] = {
    "rtnb": """
        ConfirmedIdentity Connection ConnectionClosed ConnectionState Dashboard EnvelopeLog
        ErrorCode Freshness InvalidFrame Limits LiveChart LocalProtocolError Mutation
        MutationError Outcome RemoteProtocolError Replay ReplayControls RtnbError
        ServerHandle Source Status StreamTable Topic TopicFreshness WaitTimeout __version__
        charts connect connect_async panel replay serve
        DemoFilesMissing PortInUse RecordingExists ServerStartError ServerStopped SetupError
    """,
    "rtnb.charts": """
        HEIGHT MAX_BINS MAX_ROWS WIDTH lag mutations outcomes timeline
    """,
    "rtnb.core.backoff": """
        DEFAULT_BASE DEFAULT_CAP DEFAULT_MAX_RETRY_HINT DEFAULT_POLICY DEFAULT_RESET_AFTER
        HINT_JITTER Backoff BackoffSchedule Policy
    """,
    "rtnb.panel": """
        bundle_url enable is_enabled
    """,
    "rtnb.protocol": """
        DEFAULT_MAX_FRAME_SIZE Authenticate Authenticated Batch ClientBound ClientDecoder
        Error Event FrameTooLarge Heartbeat InvalidFrame LocalProtocolError Mutate
        MutationRejected Ping Pong RemoteProtocolError RtnbError ServerBound ServerDecoder
        Snapshot SnapshotEntity SnapshotRequest Subscribe Subscribed Unsubscribe
        decode_client_frame decode_server_frame encode encode_str
    """,
    "rtnb.protocol.sse": """
        DEFAULT_MAX_DATA_LENGTH DEFAULT_MAX_LINE_LENGTH SSEEvent SSEEventTooLarge
        SSELineTooLong SSEParser
    """,
    "rtnb.server": """
        AuthError Chaos Identity LogStorage MemoryStorage SQLiteStorage ServerConfig
        ServerHandle ServerRuntime TokenAuthority create_app serve
    """,
    "rtnb.telemetry": """
        ENVELOPE_CAPACITY HEARTBEAT_CAPACITY MUTATION_CAPACITY SCHEMA_VERSION STATE_CAPACITY
        EnvelopeLog TelemetryFileError
    """,
    "rtnb.telemetry.otel": """
        ENVELOPE_KEYS INCIDENT_KEYS LAG_BUCKETS MUTATION_KEYS SYSTEM ExportCounts
        LiveExporter envelope_attributes export table_rows
    """,
    "rtnb.widgets": """
        DEFAULT_FPS Action Counters Dashboard Freshness MessageBudget StreamTable get_budget
    """,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _has_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def modules_with_all(root: Path = PACKAGE) -> set[str]:
    return {
        _module_name(path)
        for path in sorted(root.rglob("*.py"))
        if _has_all(ast.parse(path.read_text(encoding="utf-8")))
    }


def test_only_public_modules_have_an_all() -> None:
    found = modules_with_all()
    grown = sorted(found - set(PUBLIC))
    lost = sorted(set(PUBLIC) - found)
    assert not grown, (
        f"implementation modules with an __all__: {grown}; remove it, or make the module "
        "public (DESIGN.md §2 'Public modules' and PUBLIC in this file)"
    )
    assert not lost, f"public modules without an __all__: {lost}"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_a_public_modules_names_are_the_documented_ones(module: str) -> None:
    mod = importlib.import_module(module)
    expected = PUBLIC[module].split()
    missing = sorted(set(expected) - set(mod.__all__))
    added = sorted(set(mod.__all__) - set(expected))
    assert not missing, f"{module} lost public names {missing}"
    assert not added, f"{module} has new public names {added}: add them to PUBLIC here"
    unresolved = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not unresolved, f"{module}.__all__ names what it does not have: {unresolved}"


def test_design_lists_the_public_modules() -> None:
    design = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = design.split("## 2.", 1)[1].split("\n## 3.", 1)[0]
    line = re.search(r"Public modules: (.*?)\.\n\n", section, re.S)
    assert line, "DESIGN.md §2 has no 'Public modules: …' sentence"
    listed = set(re.findall(r"`(rtnb(?:\.\w+)*)`", line.group(1)))
    assert listed == set(PUBLIC)


def test_the_scan_sees_an_all_however_it_is_written(tmp_path: Path) -> None:
    pkg = tmp_path / "rtnb"
    (pkg / "core").mkdir(parents=True)
    (pkg / "core" / "a.py").write_text("__all__ = ['x']\nx = 1\n")
    (pkg / "core" / "b.py").write_text("__all__: list[str] = []\n")
    (pkg / "core" / "c.py").write_text("__all__ += ['y']\n")
    (pkg / "core" / "d.py").write_text("def f():\n    __all__ = []\n")
    found = {_module_name_in(tmp_path, p) for p in (pkg / "core").glob("*.py")
             if _has_all(ast.parse(p.read_text()))}  # fmt: skip
    assert found == {"rtnb.core.a", "rtnb.core.b", "rtnb.core.c"}


def _module_name_in(root: Path, path: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)
