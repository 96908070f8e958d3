"""Framework and driver housekeeping: the statements a stack runs for itself, not for the request.

Schema introspection (``sqlite_master``, ``PRAGMA table_xinfo``, ``pg_catalog``,
``information_schema``), session settings (``SET``, ``SHOW``, ``RESET``) and server probes
(``select version()``, ``current_schema()``) are what ORMs and drivers run to learn the
database. Ranked among the app's own queries they read as slow queries or N+1 patterns that no
index fixes; the agents set them apart and report them as one ``framework_overhead`` finding
with their share of the window's database time (tasks/agents/database/findings.py).
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from tasks.agents.database.sql.text import statement_kind

SETTING_KINDS = frozenset({"pragma", "set", "show", "reset", "discard"})
_CATALOG = re.compile(
    r"\b(sqlite_master|sqlite_schema|sqlite_temp_master|sqlite_temp_schema|pg_catalog|information_schema|"
    r"pg_type|pg_namespace|pg_class|pg_attribute|pg_settings|pg_proc|pg_database|pg_extension|pg_index|"
    r"pg_constraint|pg_enum|pg_range|pg_description)\b", re.IGNORECASE)
_PROBE = re.compile(r"^\s*select\s+(pg_catalog\.)?(version|current_schema|current_setting|current_database|"
                    r"current_user|pg_backend_pid|sqlite_version)\s*\(", re.IGNORECASE)
TOP_STATEMENTS = 5  # listed in the finding's evidence


def is_housekeeping(statement: str) -> bool:
    """Whether ``statement`` (raw or normalized SQL) is introspection, a setting or a probe."""
    return statement_kind(statement) in SETTING_KINDS or bool(_CATALOG.search(statement) or _PROBE.match(statement))


def housekeeping_mask(frame: pl.DataFrame, column: str = "statement") -> pl.Series:
    """True for the rows of ``frame`` whose ``column`` is housekeeping."""
    texts = frame[column].unique().to_list()
    flagged = [t for t in texts if t is not None and is_housekeeping(t)]
    return frame[column].is_in(flagged)


def summarize(rows: list[dict[str, Any]], db_time_ms: float) -> dict[str, Any] | None:
    """The housekeeping among per-statement rows (``statement``, ``calls``, ``total_ms``): its share
    of ``db_time_ms`` and its top statements; None when there is none."""
    mine = sorted((r for r in rows if is_housekeeping(r["statement"])), key=lambda r: -r["total_ms"])
    if not mine:
        return None
    total = sum(r["total_ms"] for r in mine)
    return {
        "calls": int(sum(r["calls"] for r in mine)), "total_ms": round(total, 3), "distinct_statements": len(mine),
        "share": round(total / db_time_ms, 4) if db_time_ms > 0 else 0.0,
        "top": [{"statement": r["statement"], "calls": int(r["calls"]), "total_ms": round(r["total_ms"], 3)}
                for r in mine[:TOP_STATEMENTS]],
    }
