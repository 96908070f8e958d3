"""Capture every SQLite and psycopg 3 statement a target runs, without changing the target's code.

The lead starts the target with ``capture_env(sql_log_dir(workdir))`` added to its
environment: the ``inject/`` folder goes first on PYTHONPATH, so the target's own Python
(any virtualenv, 3.8+) imports ``inject/sitecustomize.py`` at start-up, which installs the
stdlib-only capture in ``inject/perfagents_sqlcapture.py`` (sqlite3; psycopg 3 cursors through
``inject/perfagents_pgcapture.py`` once the target imports psycopg) and chains to any
sitecustomize it shadows. Each target process appends batches (one JSON array of records per line) to its own
file in the log folder;
``read_statements`` turns the folder into one frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import polars as pl

INJECT_DIR = Path(__file__).resolve().parent / "inject"
ENV_VAR = "PERFAGENTS_SQL_LOG"
LOG_SUBDIR = "sql"
LOG_GLOB = "sql-*.jsonl"

STATEMENT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),  # epoch seconds when the statement started
    "duration_ms": pl.Float64(),  # execute + explicit fetches (iteration is not timed)
    "sql": pl.String(),
    "pid": pl.Int64(),
    "thread": pl.Int64(),
    "request_id": pl.String(),  # null when no ASGI request was in context
    "method": pl.String(),
    "path": pl.String(),  # the raw request path
    "route": pl.String(),  # the route's path template when the framework exposes it (Starlette)
    "rows": pl.Int64(),  # rowcount for writes, fetched rows for reads, null if unknown
    "params": pl.String(),  # JSON of the bound parameters, kept for a few executions per SQL text
}


def sql_log_dir(workdir: Path) -> Path:
    """The capture folder for a run's scratch folder (used by the starter and the agent)."""
    return Path(workdir) / LOG_SUBDIR


def capture_env(log_dir: Path, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Env vars to add when starting the target so its SQLite / psycopg statements land in ``log_dir``.

    ``base_env`` is the environment the target would otherwise get (default: ours); its
    PYTHONPATH is kept after the injected folder.
    """
    log_dir = Path(log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ if base_env is None else base_env
    existing = env.get("PYTHONPATH", "")
    pythonpath = os.pathsep.join(p for p in (str(INJECT_DIR), existing) if p)
    return {"PYTHONPATH": pythonpath, ENV_VAR: str(log_dir)}


MTIME_SLACK_S = 2.0  # a file last written this long before ``since`` holds nothing newer


def _parse_batch(line: str) -> list[list]:
    """One written batch (a JSON array of records); [] for a line cut by a killed process."""
    try:
        batch = json.loads(line)
    except ValueError:
        return []
    width = len(STATEMENT_SCHEMA)
    return [rec for rec in batch if isinstance(rec, list) and len(rec) == width] if isinstance(batch, list) else []


def read_statements(log_dir: Path, since: float | None = None, until: float | None = None, *,
                    with_params_only: bool = False) -> pl.DataFrame:
    """Captured statements in ``log_dir`` with ``since <= ts <= until`` (either optional), by ts.

    ``with_params_only`` keeps only executions whose parameters were captured (for EXPLAIN and
    what-if values). Files last written well before ``since`` are skipped unread.
    """
    rows: list[list] = []
    folder = Path(log_dir)
    files = sorted(folder.glob(LOG_GLOB)) if folder.is_dir() else []
    for file in files:
        if since is not None and file.stat().st_mtime < since - MTIME_SLACK_S:
            continue
        with file.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                for rec in _parse_batch(line):
                    ts, params = rec[0], rec[10]
                    if (since is not None and ts < since) or (until is not None and ts > until):
                        continue
                    if params is None and with_params_only:
                        continue
                    rec[10] = None if params is None else json.dumps(params)
                    rows.append(rec)
    frame = pl.DataFrame(rows, schema=STATEMENT_SCHEMA, orient="row")
    return frame.sort("ts")
