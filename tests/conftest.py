"""Shared pytest configuration."""

from __future__ import annotations

from collections.abc import Iterator

import child_processes
import pytest


@pytest.fixture(autouse=True)
def _no_leaked_child_processes() -> Iterator[None]:
    """Fail a test that leaves a simulator or fault proxy it started running.

    Function-scoped autouse fixtures are set up after the module- and session-scoped ones
    and torn down after the test's own function-scoped ones, so a child started in between
    and still running here was started by the test (or its fixtures) and not stopped.
    """
    before = set(child_processes.running())
    yield
    leaked = [p for pid, p in child_processes.running().items() if pid not in before]
    for proc in leaked:
        child_processes.stop(proc, grace=2.0)
    if leaked:
        pytest.fail(
            "the test left child processes running (now stopped): "
            + "; ".join(child_processes.describe(p) for p in leaked),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Whatever a failed module/session fixture left behind (atexit would too, later).
    child_processes.stop_all()
