"""Shared fixtures: a temp DuckDB store, an isolated Prefect home, a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
