"""Generic plans of PostgreSQL statements, the indexes they miss, and the planner's what-if.

Plans: ``pg_stat_statements`` keeps statements with ``$n`` placeholders, so each is explained
as a *generic* plan: ``PREPARE`` it, force ``plan_cache_mode = force_generic_plan`` and
``EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE stmt(NULL, ...)``. This works on PostgreSQL 12+
(16's ``EXPLAIN (GENERIC_PLAN)`` does the same in one step). It runs in a read-only
transaction that is rolled back; nothing is executed. The statement is deallocated after.

Candidates: a ``Seq Scan`` of a large table gives an index on its filter's equality columns,
then either the sort keys (when a Sort under a Limit reads that scan: pagination) or one
range column. A sort's trailing primary-key tie-breaker (``ORDER BY created_at, id``) is
left out: the leading columns plus an incremental sort serve it, and the key is indexed.
Column names come from the plan and are kept only when they are real columns of the table.

What-if: with HypoPG, a hypothetical index (backend-local, invisible to other sessions) and
the same generic plan explained again: planner cost before/after (``method: hypopg``).
Without it, an estimate from the plan alone (``method: explain-estimate``). Neither is a timing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tasks.agents.database.postgres.stats import is_workload

PREPARED_NAME = "perfagents_plan"
EXPLAIN_TIMEOUT_MS = 5_000
LARGE_TABLE_ROWS = 10_000  # sequential scans of smaller tables are not worth an index
INDEX_MAX_COLUMNS = 4
PASS_THROUGH = frozenset({"Gather", "Gather Merge", "Result"})  # between a scan and its Sort / Limit
SORTS = frozenset({"Sort", "Incremental Sort"})

_NAME = r'"(?:[^"]|"")+"|[A-Za-z_][\w$]*'
_COLUMN = rf"(?P<q>{_NAME})\.(?P<c>{_NAME})"
_CASTS = r'(?:\)?::(?:"[^"]+"|[A-Za-z_][\w ]*?)(?:\[\])?)*\)?'
_OP = r"(?P<op><=|>=|<>|!=|=|<|>)(?![=>~])"
_COL_OP = re.compile(rf"{_COLUMN}{_CASTS}\s*{_OP}")
_OP_COL = re.compile(rf"(?<![<>!=~]){_OP}\s*\(*{_COLUMN}")
_SORT_KEY = re.compile(rf"^(?:(?P<q>{_NAME})\.)?(?P<c>{_NAME})(?:\s+(?P<dir>ASC|DESC))?(?:\s+NULLS\s+(?P<nulls>FIRST|LAST))?$")
_PLACEHOLDER = re.compile(r"\$(\d+)")
EQ_OPS, RANGE_OPS = frozenset({"="}), frozenset({"<", "<=", ">", ">="})


def unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def explainable(text: str) -> bool:
    """A workload DML statement holding exactly one command."""
    return is_workload(text) and ";" not in text.strip().rstrip(";")


def explain_generic(con: psycopg.Connection, text: str) -> dict[str, Any]:
    """The root ``Plan`` node of the statement's generic plan (see module docstring)."""
    params = max((int(n) for n in _PLACEHOLDER.findall(text)), default=0)
    name = sql.Identifier(PREPARED_NAME)
    args = sql.SQL("({})").format(sql.SQL(", ").join([sql.NULL] * params)) if params else sql.SQL("")
    try:
        with con.transaction(force_rollback=True):
            con.execute("SET TRANSACTION READ ONLY")
            con.execute("SELECT set_config('plan_cache_mode', 'force_generic_plan', true), "
                        "set_config('statement_timeout', %s, true)", [str(EXPLAIN_TIMEOUT_MS)])
            con.execute(sql.SQL("PREPARE {} AS ").format(name) + sql.SQL(text))
            row = con.execute(sql.SQL("EXPLAIN (FORMAT JSON, VERBOSE) EXECUTE {}{}").format(name, args)).fetchone()
    finally:
        con.execute("DEALLOCATE ALL")  # PREPARE survives a rollback; this connection is private
    assert row is not None
    doc = row[0]
    return (doc[0] if isinstance(doc, list) else doc)["Plan"]


def walk(node: dict[str, Any], ancestors: tuple[dict[str, Any], ...] = ()) -> Iterator[tuple[dict, tuple[dict, ...]]]:
    """Every node with its ancestors, nearest first."""
    yield node, ancestors
    for child in node.get("Plans", []):
        yield from walk(child, (node, *ancestors))


def plan_lines(root: dict[str, Any]) -> list[str]:
    """A compact text rendering: one line per node, indented by depth."""
    lines = []
    for node, ancestors in walk(root):
        line = "  " * len(ancestors) + node["Node Type"]
        if "Relation Name" in node:
            line += f" on {node['Relation Name']}" + (f" {node['Alias']}" if node.get("Alias") not in (None, node["Relation Name"]) else "")
        if "Index Name" in node:
            line += f" using {node['Index Name']}"
        line += f" (cost={node['Startup Cost']:.2f}..{node['Total Cost']:.2f} rows={node['Plan Rows']})"
        for key in ("Index Cond", "Filter", "Sort Key", "Presorted Key", "Group Key"):
            if key in node:
                value = node[key]
                line += f" {key}: {', '.join(value) if isinstance(value, list) else value}"
        lines.append(line)
    return lines


def relations(root: dict[str, Any]) -> list[str]:
    return sorted({n["Relation Name"] for n, _ in walk(root) if "Relation Name" in n})


def used_index_names(root: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n, _ in walk(root) if "Index Name" in n}


def filter_columns(expr: str, alias: str, columns: set[str]) -> tuple[list[str], list[str]]:
    """Equality and range columns of ``alias`` compared in a scan's Filter (none under an OR)."""
    if re.search(r"\bOR\b", expr):
        return [], []
    eq: list[str] = []
    rng: list[str] = []
    for pattern in (_COL_OP, _OP_COL):
        for m in pattern.finditer(expr):
            column = unquote(m.group("c"))
            if unquote(m.group("q")) != alias or column not in columns:
                continue
            if m.group("op") in EQ_OPS:
                eq.append(column)
            elif m.group("op") in RANGE_OPS:
                rng.append(column)
    return list(dict.fromkeys(eq)), [c for c in dict.fromkeys(rng) if c not in eq]


def sort_columns(node: dict[str, Any], ancestors: tuple[dict, ...], alias: str, columns: set[str]) -> list[str]:
    """The sort keys of a Sort that reads this scan and feeds a Limit (pagination), if plain columns."""
    keys: list[str] | None = None
    for up in ancestors:
        if up["Node Type"] in SORTS and keys is None:
            keys = up.get("Sort Key", [])
        elif up["Node Type"] == "Limit":
            break
        elif up["Node Type"] not in PASS_THROUGH:
            return []
    else:
        return []
    out, directions = [], set()
    for key in keys or []:
        m = _SORT_KEY.match(key.strip())
        if not m or (m.group("q") and unquote(m.group("q")) != alias) or unquote(m.group("c")) not in columns:
            return []
        direction = m.group("dir") or "ASC"
        if m.group("nulls") and m.group("nulls") != ("LAST" if direction == "ASC" else "FIRST"):
            return []  # non-default NULLS order needs an index declared that way
        directions.add(direction)
        out.append(unquote(m.group("c")))
    return out if len(directions) <= 1 else []  # mixed ASC/DESC needs a declared index


@dataclass(frozen=True)
class ScanCandidate:
    schema: str
    table: str
    columns: tuple[str, ...]  # empty: a full scan with nothing an index could use
    detail: str  # the scan's plan line
    basis: str  # filter | sort | filter+sort


FILTERED_SCAN_TYPES = frozenset({"Index Scan", "Index Only Scan"})


def find_seq_scans(root: dict[str, Any], table_info: Callable[[str, str], dict[str, Any] | None]) -> list[ScanCandidate]:
    """Sequential scans of large tables and the index each would want; also index scans of large
    tables that filter rows on columns their index does not hold (the planner walks the primary
    key for an ``ORDER BY id LIMIT n`` and tests every row): an index on the filter's columns.

    ``table_info(schema, table)`` -> {"rows": float, "columns": [...], "primary_key": [...]} or None.
    """
    out = []
    for node, ancestors in walk(root):
        filtered_index_scan = node["Node Type"] in FILTERED_SCAN_TYPES and bool(node.get("Filter"))
        if node["Node Type"] != "Seq Scan" and not filtered_index_scan:
            continue
        schema, table = node.get("Schema", "public"), node["Relation Name"]
        info = table_info(schema, table)
        if info is None or info["rows"] < LARGE_TABLE_ROWS:
            continue
        alias, columns = node.get("Alias", table), set(info["columns"])
        eq, rng = filter_columns(node.get("Filter", ""), alias, columns)
        if filtered_index_scan:  # an index walked for its order (ORDER BY id LIMIT n), filtering every row
            if eq or rng:
                # walking the primary key in order: the new index keeps that order after the filter
                walked = list(info.get("primary_key") or []) if not node.get("Index Cond") else []
                chosen = list(eq) + ([c for c in walked if c not in eq] if walked else rng[:1])
                line = plan_lines({k: v for k, v in node.items() if k != "Plans"})[0].strip()
                out.append(ScanCandidate(schema, table, tuple(chosen[:INDEX_MAX_COLUMNS]), line,
                                         "filter on an index scan"))
            continue
        sort = sort_columns(node, ancestors, alias, columns)
        pk = info.get("primary_key") or []
        if pk and len(sort) > len(pk) and sort[-len(pk):] == pk:
            sort = sort[: -len(pk)]  # the tie-breaker is already indexed (see module docstring)
        chosen = list(eq) + [c for c in sort if c not in eq]
        if not sort:
            chosen += rng[:1]
        parts = (["filter"] if eq or (rng and not sort) else []) + (["sort"] if sort else [])
        basis = "+".join(parts)
        line = plan_lines({k: v for k, v in node.items() if k != "Plans"})[0].strip()
        out.append(ScanCandidate(schema, table, tuple(chosen[:INDEX_MAX_COLUMNS]), line, basis))
    return out


def _index_statement(schema: str, table: str, columns: tuple[str, ...]) -> sql.Composed:
    return sql.SQL("CREATE INDEX ON {} ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)))


def whatif_hypopg(con: psycopg.Connection, hypopg_schema: str, text: str, schema: str, table: str,
                  columns: tuple[str, ...]) -> dict[str, Any]:
    """Planner cost of the statement's generic plan without and with a hypothetical index."""
    before = explain_generic(con, text)
    create = sql.SQL("SELECT indexrelid, indexname FROM {}(%s)").format(sql.Identifier(hypopg_schema, "hypopg_create_index"))
    drop = sql.SQL("SELECT {}(%s)").format(sql.Identifier(hypopg_schema, "hypopg_drop_index"))
    row = con.execute(create, [_index_statement(schema, table, columns).as_string(con)]).fetchone()
    assert row is not None
    try:
        after = explain_generic(con, text)
    finally:
        con.execute(drop, [row[0]])
    return {"cost_before": before["Total Cost"], "cost_after": after["Total Cost"],
            "index_used": row[1] in used_index_names(after), "plan_after": plan_lines(after)}


def _parallel_divisor(ancestors: tuple[dict, ...]) -> float:
    """PostgreSQL's rows-per-worker divisor for a parallel-aware node (costsize.c)."""
    workers = next((a.get("Workers Planned", 0) for a in ancestors if a["Node Type"] in ("Gather", "Gather Merge")), 0)
    return workers + max(1.0 - 0.3 * workers, 0.0) if workers else 1.0


def whatif_estimate(root: dict[str, Any], schema: str, table: str, table_rows: float) -> dict[str, Any]:
    """Without HypoPG: the plan's cost minus what the scan (and a sort above it) would save.

    The scan's cost shrinks to the fraction of rows it returns; a sort under a Limit goes away.
    A rough estimate from the plan alone, labelled as such.
    """
    before = root["Total Cost"]
    saved = 0.0
    for node, ancestors in walk(root):
        if node["Node Type"] != "Seq Scan" or node.get("Relation Name") != table or node.get("Schema", schema) != schema:
            continue
        rows = node["Plan Rows"] * (_parallel_divisor(ancestors) if node.get("Parallel Aware") else 1.0)
        fraction = min(rows / table_rows, 1.0) if table_rows else 1.0
        saved += node["Total Cost"] * (1.0 - fraction)
        for up in ancestors:
            if up["Node Type"] in SORTS:
                below = sum(c["Total Cost"] for c in up.get("Plans", []))
                saved += max(up["Total Cost"] - below, 0.0)
                break
            if up["Node Type"] not in PASS_THROUGH:
                break
    after = max(before - saved, before * 0.01)
    return {"cost_before": before, "cost_after": after, "index_used": None, "plan_after": []}
