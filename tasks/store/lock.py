"""Opening the store's DuckDB file while other processes may hold it.

DuckDB lets one process open a file read-write, or any number of processes open it read-only,
never both at once (a file lock, DuckDB's docs: "Concurrency"). So the store holds its
connection only for one read or one transaction (tasks/store/connection.py), and an open that
meets the lock waits and tries again, with a jittered backoff, up to ``LOCK_TIMEOUT_S``: the
pattern DuckDB's docs give for several writer processes ("retry the connection if another
process is already connected ... being sure to close the connection upon query completion").
Perfagents processes first take turns on a lock of their own (tasks/store/turns.py), so this
retry mostly meets processes outside perfagents. Runs, the dashboard, ``history`` and
``regressions`` interleave on one file; what the waiting costs is measured by
benchmarks/store_sharing.py.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from tasks.errors import InputError, StoreError, StoreLockedError
from tasks.store.checkpoint import NO_CHECKPOINT_ON_CLOSE, WRITER_CONFIG, drop_stale_wal

LOCK_TIMEOUT_ENV = "PERFAGENTS_STORE_LOCK_TIMEOUT_S"
LOCK_TIMEOUT_S = 60.0  # a window's transaction holds the file well under a second; a run waits, never fails, for another's
FIRST_BACKOFF_S = 0.002
MAX_BACKOFF_S = 0.05  # short: holders keep the file for milliseconds, and a long sleep would starve the waiter
WAITS_KEPT = 10_000
_BUSY = ("could not set lock", "conflicting lock", "different configuration")


@dataclass
class LockWaits:
    """How long each open of this store waited for the lock (seconds; the latest WAITS_KEPT)."""

    opens: int = 0
    retries: int = 0
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=WAITS_KEPT))

    def record(self, waited: float, retries: int) -> None:
        self.opens += 1
        self.retries += retries
        self.waits.append(waited)


def lock_timeout() -> float:
    """``PERFAGENTS_STORE_LOCK_TIMEOUT_S`` (seconds, default LOCK_TIMEOUT_S)."""
    text = os.environ.get(LOCK_TIMEOUT_ENV)
    if text is None or not text.strip():
        return LOCK_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise InputError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds >= 0, got {text!r}")
    return value


def busy(exc: BaseException) -> bool:
    """Whether DuckDB refused the open because the file is held (another process's lock, or this
    process holding it with the other access mode)."""
    text = str(exc).lower()
    return any(mark in text for mark in _BUSY)


def open_duckdb(path: Path, *, read_only: bool, timeout_s: float, waits: LockWaits,
                waited_before: float = 0.0) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect`` that waits for a held file, up to ``timeout_s``, then raises
    ``StoreLockedError`` (a TransientError: a retry may succeed). ``waited_before``: the seconds
    already spent waiting for the turn (tasks/store/turns.py), counted in ``waits``."""
    start = time.monotonic() - waited_before
    timeout_s += waited_before
    delay, retries = FIRST_BACKOFF_S, 0
    while True:
        try:
            con = _connect(path, read_only)
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            waited = time.monotonic() - start
            if drop_stale_wal(path, exc):
                continue
            if not busy(exc):
                raise StoreError(f"store {path}: {first_line(exc)}") from exc
            if waited >= timeout_s:
                raise StoreLockedError(f"store {path} is held by another process (waited {waited:.1f} s: "
                                       f"{first_line(exc)})") from exc
            time.sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, timeout_s - waited)))
            delay, retries = min(delay * 2, MAX_BACKOFF_S), retries + 1
            continue
        except (duckdb.Error, OSError) as exc:
            raise StoreError(f"store {path}: {first_line(exc)}") from exc
        waits.record(time.monotonic() - start, retries)
        return con


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A reader's connection, or a writer's that commits to the WAL and never checkpoints in place."""
    if read_only:
        return duckdb.connect(str(path), read_only=True)
    con = duckdb.connect(str(path), config=WRITER_CONFIG)
    try:
        con.execute(NO_CHECKPOINT_ON_CLOSE)
    except BaseException:
        con.close()
        raise
    return con


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
