"""Where in the target's code a statement runs from: its call site, from the captured stacks.

The capture (tasks.agents.database.sqlcapture) keeps, for the first executions of each SQL text, the
target's own frames, innermost first (``module:qualname:line``). A statement's call site is
the innermost of its frames that is not a shared helper, as ``module:qualname``. A function in
the stacks of at least SHARED_FRAME_MIN_STATEMENTS distinct statements is shared when it is in
the stacks of at least SHARED_FRAME_SHARE of all of them (a database wrapper everything goes
through, ``Database.query``), or when at least WRAPPER_MIN_CALLERS distinct functions call it
(a wrapper some statements go through, ``Database.execute`` for the writes): either way it is
not the place that decides to run this statement. A helper that runs its own few statements
from many places is not shared (fewer statements). When every frame of a stack is shared, the
one in the fewest statements' stacks (the innermost of those) is the call site. A statement run from several places takes the
stack it was seen with most often; the others ride along as evidence.

Shared by the SQLite and PostgreSQL paths of the database agent; ``statement_location`` is the
location of a statement-level finding: its tables, else its call site, else its first keywords.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from tasks.agents.database.sql.stats import add_statement_columns
from tasks.agents.database.sql.text import KEYWORDS, normalize_sql, tokenize
from tasks.agents.database.sqlcapture import read_statements

SHARED_FRAME_SHARE = 0.5  # a function in the stacks of this share of distinct statements is a shared helper
SHARED_FRAME_MIN_STATEMENTS = 3  # ... and of at least this many
WRAPPER_MIN_CALLERS = 3  # or one in the stacks of that many statements, called from this many functions
OTHER_STACKS_SHOWN = 2  # further distinct stacks of one statement kept in evidence
LOCATION_KEYWORDS = 2  # leading keywords naming a statement without tables or call site (BEGIN IMMEDIATE)


def frame_function(entry: str) -> str:
    """``module:qualname:line`` -> ``module:qualname``."""
    head, _, line = entry.rpartition(":")
    return head if head and line.isdigit() else entry


def shared_functions(stacks_by_statement: list[list[tuple[str, ...]]]) -> Counter[str]:
    """The shared helpers (module docstring) -> in how many statements' stacks, given each statement's stacks."""
    uses: Counter[str] = Counter()
    callers: dict[str, set[str]] = defaultdict(set)
    for stacks in stacks_by_statement:
        uses.update({frame_function(e) for stack in stacks for e in stack})
        for stack in stacks:
            names = [frame_function(e) for e in stack]
            for inner, outer in zip(names, names[1:], strict=False):
                if outer != inner:
                    callers[inner].add(outer)
    statements = len(stacks_by_statement)
    return Counter({f: n for f, n in uses.items() if n >= SHARED_FRAME_MIN_STATEMENTS
                    and (n >= SHARED_FRAME_SHARE * statements or len(callers[f]) >= WRAPPER_MIN_CALLERS)})


def find_call_sites(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Normalized statement -> {call_site, stack, other_stacks, shared_frames} for statements with stacks.

    ``frame`` has the capture's ``stack`` column and sql.stats.add_statement_columns' ``statement``.
    """
    if frame.is_empty() or not {"stack", "statement"} <= set(frame.columns):
        return {}
    stacks: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    for statement, stack in frame.filter(pl.col("stack").list.len() > 0).select("statement", "stack").iter_rows():
        stacks[statement][tuple(stack)] += 1
    if not stacks:
        return {}
    shared = shared_functions([list(seen) for seen in stacks.values()])
    out: dict[str, dict[str, Any]] = {}
    for statement, seen in stacks.items():
        ranked = [list(stack) for stack, _ in seen.most_common()]
        top = ranked[0]
        names = [frame_function(e) for e in top]
        site = next((f for f in names if f not in shared), None) or min(names, key=lambda f: shared[f])
        out[statement] = {
            "call_site": site, "stack": top, "other_stacks": ranked[1:1 + OTHER_STACKS_SHOWN],
            "shared_frames": sorted({f for f in names if f in shared}),
        }
    return out


def read_call_sites(log_dir: Path) -> dict[str, dict[str, Any]]:
    """find_call_sites over every captured execution that kept a stack (whatever its window)."""
    frame = read_statements(log_dir, with_stack_only=True)
    return find_call_sites(add_statement_columns(frame)) if not frame.is_empty() else {}


def call_site_of(sites: dict[str, dict[str, Any]], statement: str) -> dict[str, Any]:
    """The call-site fields of ``statement`` (any text: normalized here), empty ones when unknown."""
    found = sites.get(statement) or sites.get(normalize_sql(statement))
    return dict(found) if found else {"call_site": None, "stack": [], "other_stacks": [], "shared_frames": []}


def leading_keywords(statement: str, limit: int = LOCATION_KEYWORDS) -> str:
    """The statement's first keywords, upper-cased: ``COMMIT``, ``BEGIN IMMEDIATE``, ``SELECT``."""
    words: list[str] = []
    for tok in tokenize(statement):
        if tok.word not in KEYWORDS or len(words) >= limit:
            break
        words.append(tok.text.upper())
    return " ".join(words)


def statement_location(tables: list[str], call_site: str | None, statement: str) -> str:
    """A statement finding's location: its tables, else its call site, else its first keywords."""
    if tables:
        return ",".join(tables)
    if call_site:
        return call_site
    return leading_keywords(statement) or "(statement without keywords)"
