"""Capture every SQLite and psycopg 3 statement a target runs, without changing the target's code.

The lead starts the target with ``capture_env(sql_log_dir(workdir))`` added to its
environment: the ``inject/`` folder goes first on PYTHONPATH, so the target's own Python
(any virtualenv, 3.8+) imports ``inject/sitecustomize.py`` at start-up, which installs the
stdlib-only capture in ``inject/perfagents_sqlcapture.py`` (sqlite3; psycopg 3 cursors through
``inject/perfagents_pgcapture.py`` once the target imports psycopg; the files are written by
``inject/perfagents_capturelog.py``) and chains to any sitecustomize it shadows. Each target
process appends batches (one JSON array of records per line) to its own file in the log
folder; ``read_statements`` turns the folder into one frame. Connection-pool acquisitions
(psycopg_pool ``getconn``) go to separate ``pool-*.jsonl`` files of the same batch format, so
statement readers never see them; ``read_pool_waits`` reads those.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

INJECT_DIR = Path(__file__).resolve().parent / "inject"
ENV_VAR = "PERFAGENTS_SQL_LOG"
LOG_SUBDIR = "sql"
LOG_GLOB = "sql-*.jsonl"
PAUSE_FILE = "paused"  # inject/perfagents_capturelog.py reads the same name

STATEMENT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),  # epoch seconds when the statement started
    "duration_ms": pl.Float64(),  # execute + explicit fetches (iteration is not timed)
    "sql": pl.String(),
    "pid": pl.Int64(),
    "thread": pl.Int64(),
    "request_id": pl.String(),  # null when no request (ASGI or WSGI) was in context
    "method": pl.String(),
    "path": pl.String(),  # the raw request path
    "route": pl.String(),  # the route's path template when the framework exposes it (Starlette)
    "rows": pl.Int64(),  # rowcount for writes, fetched rows for reads, null if unknown
    "params": pl.String(),  # JSON of the bound parameters, kept for a few executions per SQL text
    # the target's own frames, innermost first, "module:qualname:line", kept with the parameters
    "stack": pl.List(pl.String()),
    # the Locust request name the request carried (X-Perfagents-Request), null without one
    "request_name": pl.String(),
}
BASE_WIDTH = 11  # records written before ``stack`` was added end at params
POOL_LOG_GLOB = "pool-*.jsonl"
POOL_WAIT_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Float64(),  # epoch seconds when getconn was called
    "wait_ms": pl.Float64(),  # until it returned a connection (or raised)
    "pool": pl.String(),  # the pool's name (psycopg_pool: "pool-N" unless named)
    "pool_class": pl.String(),  # ConnectionPool, AsyncConnectionPool, a null pool or a subclass
    "max_size": pl.Int64(),
    "pid": pl.Int64(),
    "thread": pl.Int64(),
    "request_id": pl.String(),
    "method": pl.String(),
    "path": pl.String(),
    "route": pl.String(),
    "ok": pl.Boolean(),  # False when getconn raised (PoolTimeout, TooManyRequests, closed pool)
    "request_name": pl.String(),
}
POOL_BASE_WIDTH = 12  # records written before ``request_name`` was added end at ok


def sql_log_dir(workdir: Path) -> Path:
    """The capture folder for a run's scratch folder (used by the starter and the agent)."""
    return Path(workdir) / LOG_SUBDIR


def set_capture(log_dir: Path, on: bool) -> None:
    """Record statements (a profiling window) or pause (a window that decides, so its target
    carries no capture cost). The target's writer thread reads the switch every 0.25 s
    (``inject/perfagents_capturelog.py``); a folder no target writes to is left alone."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return
    flag = log_dir / PAUSE_FILE
    if on:
        flag.unlink(missing_ok=True)
    else:
        flag.touch()


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


def _parse_batch(line: bytes, width: int, min_width: int) -> list[list]:
    """One written batch (a JSON array of records), each padded to ``width``; [] for a cut line.

    Records shorter than ``width`` (written before trailing fields were added) but at least
    ``min_width`` long get nulls for the missing fields; longer ones are cut to ``width``.
    """
    try:
        batch = orjson.loads(line)
    except ValueError:  # a cut line, or bytes that are not UTF-8 (read as the text they hold)
        try:
            batch = orjson.loads(line.decode("utf-8", errors="replace"))
        except ValueError:
            return []
    if not isinstance(batch, list):
        return []
    out = []
    for rec in batch:
        if not isinstance(rec, list) or len(rec) < min_width:
            continue
        out.append(rec[:width] if len(rec) >= width else rec + [None] * (width - len(rec)))
    return out


def _statement_row(rec: list) -> list:
    """A statement record as STATEMENT_SCHEMA holds it: parameters as JSON text, a stack a list."""
    if rec[10] is not None:
        rec[10] = json.dumps(rec[10])
    if rec[11] is not None and not isinstance(rec[11], list):
        rec[11] = None
    return rec


@dataclass
class _ParsedFile:
    """What a capture file held up to ``offset`` (the end of its last complete line), parsed."""

    inode: int
    offset: int = 0
    frame: pl.DataFrame | None = None


class _ParsedFiles:
    """Capture files parsed once, then only what was appended since: an agent reads the same
    growing files several times a window (statements of the window, then every execution with
    parameters or a stack). The advisor tests' N+1 target writes ~1.3 million statements in two
    12 s profiling windows: reading every file whole on every read took 19.6 s of the run's CPU
    (16.7 s of it parsing JSON), reading each byte once 9.3 s (6.5 s); py-spy, 2026-12-05. A line
    still being written (no newline yet) waits for the next read."""

    def __init__(self) -> None:
        self._files: dict[tuple[Path, str], _ParsedFile] = {}
        self._lock = threading.Lock()

    def frame(self, file: Path, schema: dict[str, pl.DataType], min_width: int,
              to_row: Callable[[list], list] | None) -> pl.DataFrame:
        key = (file, ",".join(schema))
        with self._lock:
            stat = file.stat()
            parsed = self._files.get(key)
            if parsed is None or parsed.inode != stat.st_ino or stat.st_size < parsed.offset:
                parsed = self._files[key] = _ParsedFile(inode=stat.st_ino)  # new, replaced or cut short
            if stat.st_size > parsed.offset:
                with file.open("rb") as fh:
                    fh.seek(parsed.offset)
                    data = fh.read(stat.st_size - parsed.offset)
                complete = data.rfind(b"\n") + 1
                rows = [to_row(rec) if to_row else rec for line in data[:complete].splitlines()
                        for rec in _parse_batch(line, len(schema), min_width)]
                if rows:
                    new = pl.DataFrame(rows, schema=schema, orient="row")
                    parsed.frame = new if parsed.frame is None else pl.concat([parsed.frame, new])
                parsed.offset += complete
            return parsed.frame if parsed.frame is not None else pl.DataFrame(schema=schema)

    def forget_deleted(self) -> None:
        """Drop what was parsed of files that are gone (finished runs' scratch folders), so a
        long-lived process holds only live captures."""
        with self._lock:
            for key in [k for k in self._files if not k[0].exists()]:
                del self._files[key]


_PARSED = _ParsedFiles()


def _read(folder: Path, pattern: str, since: float | None, until: float | None,
          schema: dict[str, pl.DataType], min_width: int, to_row: Callable[[list], list] | None) -> pl.DataFrame:
    """The records of the folder's ``pattern`` files with ``since <= ts <= until``; files last
    written well before ``since`` are skipped unread."""
    _PARSED.forget_deleted()
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    frames = [_PARSED.frame(file, schema, min_width, to_row) for file in files
              if since is None or file.stat().st_mtime >= since - MTIME_SLACK_S]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    if since is not None:
        frame = frame.filter(pl.col("ts") >= since)
    if until is not None:
        frame = frame.filter(pl.col("ts") <= until)
    return frame


def read_statements(log_dir: Path, since: float | None = None, until: float | None = None, *,
                    with_params_only: bool = False, with_stack_only: bool = False) -> pl.DataFrame:
    """Captured statements in ``log_dir`` with ``since <= ts <= until`` (either optional), by ts.

    ``with_params_only`` keeps only executions whose parameters were captured (for EXPLAIN and
    what-if values), ``with_stack_only`` those whose call stack was; both: either. Files last
    written well before ``since`` are skipped unread.
    """
    frame = _read(Path(log_dir), LOG_GLOB, since, until, STATEMENT_SCHEMA, BASE_WIDTH, _statement_row)
    kept = []
    if with_params_only:
        kept.append(pl.col("params").is_not_null())
    if with_stack_only:
        kept.append(pl.col("stack").list.len().fill_null(0) > 0)
    if kept:
        frame = frame.filter(pl.any_horizontal(kept))
    return frame.sort("ts")


def read_pool_waits(log_dir: Path, since: float | None = None, until: float | None = None) -> pl.DataFrame:
    """Captured connection-pool acquisitions in ``log_dir`` with ``since <= ts <= until``, by ts."""
    return _read(Path(log_dir), POOL_LOG_GLOB, since, until, POOL_WAIT_SCHEMA, POOL_BASE_WIDTH, None).sort("ts")
