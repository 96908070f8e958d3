"""EXPLAIN QUERY PLAN, full-scan detection, index candidates and the measured what-if.

The what-if never touches the target's database: it copies the file with SQLite's backup API
(one consistent snapshot, even while the target writes), times real captured statements on the
copy, builds the candidate index on the copy, times them again, and drops the index.
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.agents.database.sql.naming import index_name
from tasks.agents.database.sql.text import (
    ColumnUse,
    filter_columns,
    null_params,
    statement_kind,
    table_refs,
    tokenize,
)
from tasks.agents.database.sqlite.util import (
    IndexInfo,
    checked_table,
    connect_readonly,
    list_indexes,
    table_columns,
)
from tasks.db.ident import create_index_sql, drop_index_sql

EXPLAINABLE_KINDS = frozenset({"select", "with", "update", "delete", "insert", "replace"})
INDEX_MAX_COLUMNS = 4
WHATIF_REPEATS = 5  # timed runs per statement instance (the median counts)
WHATIF_MIN_REPEATS = 2
WHATIF_INSTANCE_BUDGET_S = 0.5  # stop repeating an instance after this long
PROGRESS_STEPS = 10_000  # VM steps between deadline checks

_SCAN = re.compile(r"^SCAN (?:TABLE )?(?P<name>[^\s()]+)(?: AS (?P<alias>\S+))?(?P<rest>.*)$")
_AUTOMATIC = re.compile(r"^SEARCH (?:TABLE )?(?P<name>[^\s()]+)(?: AS \S+)? USING AUTOMATIC (?:PARTIAL )?(?:COVERING )?INDEX \((?P<cols>[^)]*)\)")
_USES_INDEX = re.compile(r"USING (?:COVERING )?INDEX (\S+)")


def explain_plan(con: sqlite3.Connection, sql: str, params: Any = None) -> list[str]:
    """EXPLAIN QUERY PLAN of one statement, one line per node, indented by depth."""
    if params is None:
        params = null_params(sql)
    rows = con.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


@dataclass(frozen=True)
class FullScan:
    table: str  # the real table name
    detail: str  # the plan line
    automatic_columns: tuple[str, ...] = ()  # SQLite built a throw-away index on these


def _resolve_table(con: sqlite3.Connection, sql: str, name: str) -> str | None:
    for ref in table_refs(tokenize(sql)):
        if ref.alias and ref.alias.lower() == name.lower():
            return ref.table
    for ref in table_refs(tokenize(sql)):
        if ref.table.lower() == name.lower():
            return ref.table
    return name if table_columns(con, name) else None


def find_full_scans(con: sqlite3.Connection, sql: str, plan: list[str]) -> list[FullScan]:
    """Tables the plan reads in full (``SCAN t`` without an index) or indexes on the fly."""
    out: list[FullScan] = []
    for line in plan:
        detail = line.strip()
        m = _SCAN.match(detail)
        if m and "USING" not in m.group("rest") and m.group("name") not in ("CONSTANT", "SUBQUERY"):
            table = _resolve_table(con, sql, m.group("alias") or m.group("name"))
            if table and table_columns(con, table):
                out.append(FullScan(table, detail))
            continue
        m = _AUTOMATIC.match(detail)
        if m:
            table = _resolve_table(con, sql, m.group("name"))
            cols = tuple(re.split(r"[=<>]", c.strip())[0] for c in m.group("cols").split(" AND ") if c.strip())
            if table and cols:
                out.append(FullScan(table, detail, cols))
    return out


def used_indexes(plan: list[str]) -> set[str]:
    return {m.group(1) for line in plan for m in _USES_INDEX.finditer(line)}


def _belongs(use: ColumnUse, table: str, names: set[str], columns: set[str], others: set[str]) -> bool:
    if use.qualifier is not None:
        return use.qualifier.lower() in names
    return use.column in columns and use.column not in others


def index_columns(con: sqlite3.Connection, sql: str, scan: FullScan) -> list[str]:
    """The index that would serve ``scan``: equality columns first, then one range column."""
    columns = table_columns(con, scan.table)
    if scan.automatic_columns:
        return [c for c in scan.automatic_columns if c in columns][:INDEX_MAX_COLUMNS]
    refs = table_refs(tokenize(sql))
    names = {scan.table.lower()} | {r.alias.lower() for r in refs if r.table == scan.table and r.alias}
    others = {c for r in refs if r.table != scan.table for c in table_columns(con, r.table)}
    eq: list[str] = []
    rng: list[str] = []
    for use in filter_columns(sql):
        if use.column in columns and _belongs(use, scan.table, names, set(columns), others):
            (eq if use.op == "eq" else rng).append(use.column)
    chosen = list(dict.fromkeys(eq))
    chosen += [c for c in dict.fromkeys(rng) if c not in chosen][:1]
    if not chosen and len({r.table for r in refs}) == 1 and _sorts(con, sql):  # an index can serve ORDER BY
        chosen = [c for c in order_by_columns(sql) if c in columns]
    return chosen[:INDEX_MAX_COLUMNS]


def _sorts(con: sqlite3.Connection, sql: str) -> bool:
    """Whether the plan sorts the rows itself for ORDER BY (a temp B-tree): no index gives the order."""
    try:
        return any("TEMP B-TREE FOR ORDER BY" in line for line in explain_plan(con, sql, null_params(sql)))
    except sqlite3.Error:
        return False


def order_by_columns(sql: str) -> list[str]:
    """The plain columns of the statement's top-level ORDER BY, in order (``ORDER BY t.a DESC, b``
    -> ``[a, b]``); [] when it orders by anything else (an expression, a position)."""
    tokens = tokenize(sql)
    depth, start = 0, None
    for i, tok in enumerate(tokens):
        depth += tok.text == "("
        depth -= tok.text == ")"
        if depth == 0 and tok.word == "order" and i + 1 < len(tokens) and tokens[i + 1].word == "by":
            start = i + 2
    if start is None:
        return []
    columns: list[str] = []
    i = start
    while i < len(tokens) and tokens[i].word not in ("limit", "offset") and tokens[i].text != ")":
        if i + 2 < len(tokens) and tokens[i + 1].text == ".":
            i += 2  # a qualified column: keep its name
        if not tokens[i].name or tokens[i].kind not in ("word", "qident"):
            return []
        columns.append(tokens[i].name)
        i += 1
        if i < len(tokens) and tokens[i].word in ("asc", "desc"):
            i += 1
        if i < len(tokens) and tokens[i].text == ",":
            i += 1
        elif i < len(tokens) and tokens[i].word not in ("limit", "offset") and tokens[i].text != ")":
            return []
    return columns


def existing_index_covers(indexes: list[IndexInfo], table: str, columns: list[str]) -> str | None:
    """The name of an index on ``table`` whose leading columns are ``columns``, if any."""
    for idx in indexes:
        if idx.table == table and list(idx.columns[: len(columns)]) == columns:
            return idx.name
    return None


def decode_params(params_json: str | None, sql: str) -> Any:
    """Captured parameters (JSON) -> what sqlite3 binds; NULLs when none were captured."""
    if params_json is None:
        return null_params(sql)
    value = json.loads(params_json)

    def one(v: Any) -> Any:
        if isinstance(v, dict) and "$bytes" in v:
            return bytes.fromhex(v["$bytes"])
        return None if isinstance(v, dict) and "$bytes_len" in v else v  # a blob the capture kept no bytes of

    if isinstance(value, dict):
        return {k: one(v) for k, v in value.items()}
    return tuple(one(v) for v in value)


def copy_database(source: Path, dest_dir: Path) -> Path:
    """A consistent copy of ``source`` in ``dest_dir`` through the backup API (source read-only)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"whatif-{uuid.uuid4().hex[:8]}.db"
    src = connect_readonly(source)
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return dest


@dataclass
class WhatIf:
    table: str
    columns: list[str]
    name: str
    before_ms: float  # mean over instances of the median run, without the index
    after_ms: float  # the same with the index
    build_ms: float
    index_used: bool  # the plan on the copy uses the new index
    plans_after: list[list[str]] = field(default_factory=list)  # distinct plans with the index
    instances: int = 0
    interrupted: bool = False

    @property
    def ratio(self) -> float:
        return self.before_ms / self.after_ms if self.after_ms > 0 else float("inf")


def _run_once(con: sqlite3.Connection, sql: str, params: Any) -> float:
    write = statement_kind(sql) not in ("select", "with")
    if write:
        con.execute("SAVEPOINT perfagents_whatif")
    t0 = time.perf_counter()
    try:
        con.execute(sql, params).fetchall()
        return (time.perf_counter() - t0) * 1000.0
    finally:
        if write:
            con.execute("ROLLBACK TO perfagents_whatif")
            con.execute("RELEASE perfagents_whatif")


def time_statements(con: sqlite3.Connection, instances: list[tuple[str, Any]], deadline: float) -> list[float]:
    """Median ms of each instance over a few runs (fewer when slow or near the deadline)."""
    medians = []
    for sql, params in instances:
        runs: list[float] = []
        started = time.monotonic()
        while len(runs) < WHATIF_REPEATS:
            runs.append(_run_once(con, sql, params))
            spent = time.monotonic() - started
            if len(runs) >= WHATIF_MIN_REPEATS and (spent > WHATIF_INSTANCE_BUDGET_S or time.monotonic() > deadline):
                break
        medians.append(statistics.median(runs))
    return medians


def whatif_index(copy_path: Path, table: str, columns: list[str], instances: list[tuple[str, Any]],
                 deadline: float | None = None) -> WhatIf:
    """Time ``instances`` on the copy without and with the index ``table(columns)``; drop it after.

    Raises sqlite3.OperationalError('interrupted') when ``deadline`` (time.monotonic) passes.
    """
    deadline = deadline if deadline is not None else time.monotonic() + 60
    con = sqlite3.connect(copy_path, isolation_level=None)
    con.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, PROGRESS_STEPS)
    name = index_name(table, columns)
    try:
        checked_table(con, table, columns)
        before = time_statements(con, instances, deadline)
        t0 = time.perf_counter()
        con.execute(create_index_sql(name, table, columns))
        build_ms = (time.perf_counter() - t0) * 1000.0
        try:
            plans = [explain_plan(con, sql, params) for sql, params in instances]
            after = time_statements(con, instances, deadline)
        finally:
            con.execute(drop_index_sql(name))
    finally:
        con.close()
    used = all(name in used_indexes(plan) for plan in plans)
    distinct = [list(p) for p in dict.fromkeys(tuple(p) for p in plans)]
    return WhatIf(table, columns, name, statistics.fmean(before), statistics.fmean(after), build_ms,
                  used, distinct, len(instances))


def find_unused_indexes(con: sqlite3.Connection, plans: list[list[str]]) -> list[IndexInfo]:
    """Indexes created with CREATE INDEX (not UNIQUE: those enforce constraints) no plan used."""
    seen = set().union(*(used_indexes(p) for p in plans)) if plans else set()
    return [
        idx for idx in list_indexes(con)
        if idx.origin == "c" and not idx.unique and idx.name not in seen
    ]


def explainable(sql: str) -> bool:
    return statement_kind(sql) in EXPLAINABLE_KINDS

