"""Shared test helpers, the hypothesis profiles and the session-wide chaos-run fixture.

``CI=true`` selects the ``ci`` hypothesis profile: derandomized (the same
examples on every run, so a red CI run reproduces locally with ``CI=true``)
and no per-example deadline (a shared runner's hiccup is not a failure).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

from tests.helpers import stopper

#: the session-wide ``chaos_run`` fixture, for client, telemetry and chart tests
pytest_plugins = ["tests.chaos_run"]

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail after
    ``timeout`` s, naming ``what`` is waited for if given."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if what is not None:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the session's chaos run (tens of seconds to record) are ``slow``."""
    for item in items:
        if "chaos_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _servers_stopped() -> Iterator[None]:
    """Every server handed to ``tests.helpers.stopper`` has stopped by the session's end."""
    yield
    stopper.finish()
