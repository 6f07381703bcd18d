"""``topic.df`` stays fast whatever the entities hold: at most DF_MAX_COLUMNS columns."""

from __future__ import annotations

from typing import Any

from rtnb.client.topic import DF_MAX_COLUMNS, OVERFLOW_COLUMN, Topic
from rtnb.core.pipeline import Pipeline


class _Direct:
    """The one thing ``Topic`` reads of its connection here: ``call``."""

    def call(self, fn: Any, *, what: str) -> Any:
        return fn()


def test_fields_past_the_column_cap_go_into_one_overflow_column() -> None:
    ts = Pipeline().add_topic("wide", "none")
    wide = {f"f{i}": i for i in range(50_000)}  # one hostile entity: 50,000 fields
    ts.store.replace([("w", wide, 1), ("n", {"f0": -1, "name": "x"}, 2)])
    df = Topic(_Direct(), ts).df  # type: ignore[arg-type]
    assert len(df.columns) == DF_MAX_COLUMNS + 2  # + _overflow + _pending
    assert df.attrs["overflow_fields"] == 50_001 - DF_MAX_COLUMNS
    assert df.loc["w", "f0"] == 0 and df.loc["n", "f0"] == -1
    assert df.loc["w", OVERFLOW_COLUMN] == {f"f{i}": i for i in range(DF_MAX_COLUMNS, 50_000)}
    assert df.loc["n", OVERFLOW_COLUMN] == {"name": "x"}


def test_a_frame_within_the_cap_is_unchanged() -> None:
    ts = Pipeline().add_topic("t", "none")
    ts.store.replace([(f"e{i}", {"a": i, "b": str(i)}, i) for i in range(3_000)])
    df = Topic(_Direct(), ts).df  # type: ignore[arg-type]
    assert list(df.columns) == ["a", "b", "_pending"] and "overflow_fields" not in df.attrs
