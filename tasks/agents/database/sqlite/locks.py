"""Signs of lock contention on SQLite: cheap statements that wait behind writers.

SQLite lets one writer at a time hold the database; with the rollback journal, readers wait
while a writer commits. A statement whose median call is a fraction of a millisecond (a
primary-key read) but whose p95 is tens of times its median is not slow, it waits. When such
statements run in the same window as transactions (BEGIN / COMMIT), the window shows lock
contention: ``lock_contention``, with the waiting statements, the writers, the time spent waiting
(mean minus median, times calls) and the database's journal mode. The fix is a knob (WAL
journal, synchronous=NORMAL) or shorter write transactions.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

from tasks.agents.database.sqlite.util import connect_readonly
from tasks.errors import SpecError
from tasks.findings import Finding, Severity

WAIT_P50_MAX_MS = 1.0  # a statement whose median call is this cheap ...
WAIT_P95_RATIO = 20.0  # ... and whose p95 is this many times its median waits rather than works
MIN_CALLS = 20
WRITE_STATEMENT = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK)\b", re.IGNORECASE)
SEVERITY_WAIT_SHARE = (("high", 0.2), ("medium", 0.05))  # waited time as a share of all DB time
SHOWN = 5


def _journal_mode(database: str | None) -> str | None:
    if not database:
        return None
    try:
        con = connect_readonly(Path(database))
        try:
            row = con.execute("PRAGMA journal_mode").fetchone()
        finally:
            con.close()
    except (sqlite3.Error, OSError, SpecError):
        return None
    return str(row[0]) if row else None


def _severity(share: float) -> Severity:
    for level, threshold in SEVERITY_WAIT_SHARE:
        if share >= threshold:
            return level  # type: ignore[return-value]
    return "low"


def lock_contention(observed: dict[str, Any]) -> Finding | None:
    """A ``lock_contention`` finding from the window's statement statistics, or None."""
    statements = observed.get("statements", [])
    writers = [s for s in statements if WRITE_STATEMENT.match(s["statement"])]
    waiting = [s for s in statements
               if not WRITE_STATEMENT.match(s["statement"]) and s["calls"] >= MIN_CALLS and not s.get("full_scans")
               and s["p50_ms"] <= WAIT_P50_MAX_MS and s["p95_ms"] >= WAIT_P95_RATIO * max(s["p50_ms"], 0.01)]
    total_ms = sum(s["total_ms"] for s in statements)
    if not writers or not waiting or total_ms <= 0:
        return None
    waited_ms = sum(max(s["mean_ms"] - s["p50_ms"], 0.0) * s["calls"] for s in waiting)
    share = waited_ms / total_ms
    waiting.sort(key=lambda s: -(s["mean_ms"] - s["p50_ms"]) * s["calls"])
    keys = ("statement", "calls", "p50_ms", "p95_ms", "mean_ms")
    evidence = {
        "waiting_statements": [{k: s[k] for k in keys} for s in waiting[:SHOWN]],
        "waiting_count": len(waiting),
        "writers": [{k: s[k] for k in keys} for s in writers[:SHOWN]],
        "waited_ms": round(waited_ms, 1), "db_time_share": round(share, 4),
        "journal_mode": _journal_mode(observed.get("database")),
        "reading": f"{len(waiting)} statement(s) with a median under {WAIT_P50_MAX_MS:g} ms reach a p95 "
                   f"{WAIT_P95_RATIO:g}x or more above it while transactions commit: they wait for the lock",
    }
    return Finding(agent="database", kind="lock_contention", location="sqlite:database lock",
                   severity=_severity(share), evidence=evidence,
                   estimated_gain={"db_time_share": round(share, 4), "waited_ms": round(waited_ms, 1)})
