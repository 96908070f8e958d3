"""Lock contention on SQLite: cheap statements whose tail waits behind committing writers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tasks.agents.database.sqlite.locks import lock_contention


def stat(statement: str, calls: int, p50: float, p95: float, mean: float, full_scans: list | None = None) -> dict:
    return {"statement": statement, "calls": calls, "p50_ms": p50, "p95_ms": p95, "mean_ms": mean,
            "total_ms": mean * calls, "full_scans": full_scans or []}


def test_cheap_reads_with_a_long_tail_beside_commits_are_lock_contention(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    statements = [
        stat("SELECT name FROM products WHERE id = ?", 600, 0.07, 81.0, 13.3),  # waits
        stat("SELECT * FROM orders WHERE customer_id = ?", 300, 25.0, 60.0, 30.0, ["orders"]),  # works
        stat("COMMIT", 250, 3.9, 82.0, 20.9),
        stat("BEGIN IMMEDIATE", 250, 0.03, 78.0, 11.3),
    ]
    finding = lock_contention({"statements": statements, "database": str(db)})
    assert finding is not None and finding.kind == "lock_contention" and finding.location == "sqlite:database lock"
    assert [s["statement"] for s in finding.evidence["waiting_statements"]] == ["SELECT name FROM products WHERE id = ?"]
    assert {s["statement"] for s in finding.evidence["writers"]} == {"COMMIT", "BEGIN IMMEDIATE"}
    assert finding.evidence["journal_mode"] == "delete"  # SQLite's default rollback journal
    assert finding.evidence["waited_ms"] == round((13.3 - 0.07) * 600, 1)
    assert finding.severity == "high"  # ~7,900 of ~25,900 ms of DB time spent waiting


def test_no_writers_or_no_long_tail_is_no_contention() -> None:
    reads = [stat("SELECT name FROM products WHERE id = ?", 600, 0.07, 81.0, 13.3)]
    assert lock_contention({"statements": reads}) is None  # nobody writes: the tail is something else
    steady = [stat("SELECT name FROM products WHERE id = ?", 600, 0.07, 0.2, 0.08), stat("COMMIT", 50, 3.0, 9.0, 4.0)]
    assert lock_contention({"statements": steady}) is None
