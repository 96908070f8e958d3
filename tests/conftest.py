"""Shared fixtures: a temp DuckDB store, an isolated Prefect home, a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# The modules of the longest tests, longest first (CI: a 140 s comprehensive run with memoization,
# a SIGKILLed run, a deployment run through a worker, decisions): on the xdist workers they start
# first, and short tests fill the session's end instead of one long test running alone there.
LONGEST_FIRST = ("tests/flows/test_memoization.py", "tests/flows/test_kill_and_revert.py",
                 "tests/flows/test_decisions.py", "tests/flows/test_deployments.py",
                 "tests/flows/test_conformance_loop.py", "tests/conformance/test_matrix.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The LONGEST_FIRST modules first. For ``--dist loadgroup``, every module is one xdist group
    (its module-scoped apps and clusters start once), except that each e2e test is a group of its
    own (they share no module-scoped fixture), so one module's long runs spread over the workers.
    The order within a module is kept."""
    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(ROOT).as_posix()
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    for item in items:
        if not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group(item.path.relative_to(ROOT).as_posix()))
    items.sort(key=rank)  # stable: collection order otherwise


def pytest_configure(config: pytest.Config) -> None:
    # Prefect reads these at import: isolate each test session from the user's ~/.prefect
    home = ROOT / ".perfagents" / "test-prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.fixture
def store(tmp_path: Path):
    from tasks.store import Store

    st = Store(tmp_path / "store.duckdb")
    yield st
    st.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str]:
    """One throwaway PostgreSQL 15 cluster (pg_stat_statements preloaded) for the session: a
    superuser DSN (trust auth) to its ``perfagents`` database; skips when the binaries are missing."""
    from reference_workflows.enterprise_api.launch import free_port
    from reference_workflows.enterprise_api.pgcluster import (
        PG_BIN,
        pg_available,
        start_cluster,
        stop_cluster,
    )

    if not pg_available():
        pytest.skip(f"PostgreSQL 15 binaries not installed ({PG_BIN / 'initdb'})")
    folder = Path(tempfile.mkdtemp(prefix="perfagents-pg-", dir="/tmp"))  # reachable by the postgres user
    dsn = start_cluster(folder, free_port())
    try:
        yield dsn
    finally:
        stop_cluster(folder)
