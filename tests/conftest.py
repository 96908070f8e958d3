"""Shared fixtures: a temp DuckDB store, an isolated Prefect home, a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# The modules of the longest tests, longest first (CI: the advisor's six runs ~390 s, two studies
# through a work pool ~150 s, a 140 s comprehensive run with memoization, ...): on the xdist workers they start
# first, and short tests fill the session's end instead of one long test running alone there.
# The serial session starts with the shop's run, before a test has started the session's Prefect
# server or a browser: after the dashboard's page test, its profiling windows once met 0.4-0.9
# cores of outside load for a minute and were all rejected (no findings; a local run, 2026-12-05).
LONGEST_FIRST = ("tests/flows/test_e2e_ecommerce.py", "tests/flows/test_enterprise_pg.py", "tests/flows/test_advisor_loop.py", "tests/flows/test_parallel_studies.py",
                 "tests/flows/test_memoization.py", "tests/flows/test_conformance_loop.py",
                 "tests/flows/test_distributed_run.py", "tests/flows/test_kill_and_revert.py",
                 "tests/flows/test_regression_alerts.py", "tests/flows/test_decisions.py",
                 "tests/flows/test_deployments.py", "tests/conformance/test_matrix.py")


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
    # each xdist worker its own Prefect database: in a fresh clone two runs' ephemeral servers
    # migrated one new SQLite file at once ("duplicate column name: is_anonymous", CI 2026-12-05)
    home = home / os.environ.get("PYTEST_XDIST_WORKER", "main")
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


@pytest.fixture
def add_history_run():
    """A function that writes one synthetic run straight through Store methods: its baseline A/A
    windows (lognormal request latencies per endpoint; ``scale`` multiplies an endpoint's) with
    samples, endpoint_stats and a target CPU series, and its signature from those windows."""
    from datetime import UTC, datetime, timedelta

    import numpy as np
    import polars as pl

    from tasks.analysis.stats import endpoint_stats_frame

    def add(store, run_id: str, *, day: int, target: str = "shop", scale: dict[str, float] | None = None,
            windows: int = 3, n: int = 300, seed: int = 0, window_sd: float = 0.03) -> list[str]:
        with store.transaction():  # one open of the store for the whole run (connection.py)
            return _add(store, run_id, day, target, scale or {}, windows, n, seed, window_sd)

    def _add(store, run_id: str, day: int, target: str, scale: dict[str, float], windows: int, n: int, seed: int,
             window_sd: float) -> list[str]:
        rng = np.random.default_rng(seed)
        started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
        store.insert_run(run_id, target=target, scope="quick-win", flow="optimize-target", spec={}, goals=[],
                         quality=[], budget={}, code_version=None, started_at=started)
        ids = []
        for k in range(windows):
            window_id = f"{run_id}-w{k}"
            level = float(np.exp(rng.normal(0, window_sd)))  # the machine's between-window drift
            frames = []
            for endpoint, median in (("catalog", 10.0), ("checkout", 30.0)):
                lat = median * level * scale.get(endpoint, 1.0) * np.exp(rng.normal(0, 0.4, n))
                frames.append(pl.DataFrame({"ts": np.sort(rng.uniform(0, 10, n)), "endpoint": [endpoint] * n,
                                            "method": ["GET"] * n, "latency_ms": lat, "status": [200] * n,
                                            "bytes": [1000 if endpoint == "catalog" else 200] * n,
                                            "error": pl.Series([None] * n, dtype=pl.Utf8)}))
            samples = pl.concat(frames)
            store.insert_window(window_id, run_id=run_id, label=f"baseline-{k + 1}", attempt=1, config={},
                                change_id=None, started_at=started + timedelta(minutes=k), duration_s=10.0,
                                warmup_s=1.0, users=10, loadgen_cpu_pct=20.0, valid=True, reason=None)
            store.insert_window_frame("samples", window_id, samples)
            store.insert_window_frame("endpoint_stats", window_id, endpoint_stats_frame(samples, 10.0, window_id))
            store.insert_window_frame("resources", window_id, pl.DataFrame(
                {"ts": np.arange(0.0, 10.5, 0.5), "role": ["target"] * 21, "cpu_pct": [60.0] * 21}))
            ids.append(window_id)
        store.save_signature(run_id, target, "shape0", ids)
        return ids

    return add
