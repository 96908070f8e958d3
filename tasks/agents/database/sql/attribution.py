"""Which Locust request a captured statement served, and which request a finding slows down.

Works on the capture's frame (tasks.agents.database.sqlcapture.read_statements) whatever the backend:
``name_statements`` gives each statement the Locust name of its HTTP request — the name the
request carried (the load generator's header: exact), else by path template when exactly one spec endpoint (or path-like Locust name) has it, else by the sample that
encloses the request in time (tasks.agents.database.sql.stats.correlate_requests), else by the
template's majority vote (``consistent_votes``: a request only takes a name whose requests
mostly hit its own path template); statements outside any request stay unnamed. ``attribute_time``
then names the endpoint whose requests spent a clear majority of the time in the statements a
finding is about (``statements_using_index``: the table and the index columns in a WHERE /
ON / ORDER BY / GROUP BY clause; ``statements_like``: the same normalized text).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import polars as pl

from tasks.agents.database.sql.stats import (
    add_statement_columns,
    correlate_requests,
    map_endpoints,
    match_key,
    request_spans,
    vote_endpoints,
)
from tasks.agents.database.sql.text import clause_columns, normalize_sql, table_refs, tokenize
from tasks.agents.database.sqlcapture import read_statements

MAJORITY_SHARE = 0.6  # an endpoint must hold this share of the matching statements' time
TOP_NAMES = 5  # endpoints listed in evidence
TEMPLATE_NOISE_WORDS = frozenset({"api", "v", "int", "str", "path", "id", "get", "post", "put", "delete"})
UNNAMED = "(no request)"  # evidence key for time outside any named request


@dataclass(frozen=True)
class Attribution:
    """How the matching statements' time splits over Locust names."""

    endpoint: str | None  # the name holding at least the majority share, else None
    share: float  # the top name's share of the matching time
    top: str | None  # the top name, even without a majority
    matched_ms: float
    statements: int  # matching executions
    ms_by_name: dict[str, float] = field(default_factory=dict)  # top names, UNNAMED for the rest

    def describe(self, min_share: float = MAJORITY_SHARE) -> str:
        if self.endpoint is not None:
            return f"captured statements ({self.share:.0%} of matching time)"
        top = f"; top {self.top} {self.share:.0%}" if self.top else ""
        return f"none (captured statements: no endpoint holds {min_share:.0%} of matching time{top})"

    def evidence(self) -> dict[str, object]:
        return {"matched_statements": self.statements, "matched_ms": round(self.matched_ms, 3),
                "ms_by_endpoint": self.ms_by_name}


def load_named_statements(log_dir: Path, since: float | None, until: float | None,
                          spec_endpoints: Iterable[tuple[str, str]], samples: pl.DataFrame) -> pl.DataFrame:
    """The window's captured statements with ``statement``, ``endpoint`` and ``name`` columns (maybe empty).

    The period is narrowed to the requests Locust recorded (first start to last end): statements of
    the warm-up or of requests still running after the load stopped have no sample to be named by.
    """
    if not samples.is_empty() and {"ts", "latency_ms"} <= set(samples.columns):
        first = cast(float | None, samples.get_column("ts").min())
        last = samples.select((pl.col("ts") + pl.col("latency_ms") / 1000.0).max()).item()
        if first is not None and last is not None:
            since = float(first) if since is None else max(since, float(first))
            until = float(last) if until is None else min(until, float(last))
    frame = read_statements(log_dir, since, until)
    if frame.is_empty():
        return frame
    return name_statements(add_statement_columns(frame), spec_endpoints, samples)


def _unambiguous_names(templates: list[str], spec_endpoints: Iterable[tuple[str, str]],
                       sample_names: list[str]) -> dict[str, str]:
    """map_endpoints, minus templates whose path more than one Locust name requests."""
    names_by_key: dict[str, set[str]] = defaultdict(set)
    spec_endpoints = list(spec_endpoints)
    for name, path in spec_endpoints:
        names_by_key[match_key(path)].add(name)
    for name in sample_names:
        if name.startswith("/"):
            names_by_key[match_key(name)].add(name)
    mapped = map_endpoints(templates, spec_endpoints, sample_names)
    return {t: n for t, n in mapped.items() if len(names_by_key[match_key(t)]) == 1}


def name_statements(frame: pl.DataFrame, spec_endpoints: Iterable[tuple[str, str]],
                    samples: pl.DataFrame) -> pl.DataFrame:
    """Add ``name``: the Locust request name of each statement's request, null when unknown.

    ``frame`` has tasks.agents.database.sql.stats.add_statement_columns' columns; ``samples`` the window's requests
    (``ts``, ``endpoint`` = Locust name, ``latency_ms``, optionally ``method``).
    """
    sample_names = samples["endpoint"].drop_nulls().unique().to_list() if "endpoint" in samples.columns else []
    carried = (frame["request_name"] if "request_name" in frame.columns
               else pl.Series([None] * frame.height, dtype=pl.String)).to_list()
    templates = frame["endpoint"].drop_nulls().unique().to_list()
    direct = _unambiguous_names(templates, spec_endpoints, sample_names)
    rest = frame.filter(pl.col("endpoint").is_not_null() & ~pl.col("endpoint").is_in(list(direct)))
    if "request_name" in rest.columns:
        rest = rest.filter(pl.col("request_name").is_null())  # named by the request itself
    by_request: dict[str, str] = {}
    voted: dict[str, str] = {}
    if not rest.is_empty():
        votes = consistent_votes(request_spans(rest), samples)
        own = votes.drop_nulls("name")
        by_request = dict(zip(own["request_id"].to_list(), own["name"].to_list(), strict=True))
        voted = vote_endpoints(votes)
    names = [
        exact or (None if template is None else direct.get(template) or by_request.get(rid) or voted.get(template))
        for exact, template, rid in zip(carried, frame["endpoint"].to_list(), frame["request_id"].to_list(), strict=True)
    ]
    return frame.with_columns(pl.Series("name", names, dtype=pl.String))


def _stems(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower())
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words} - TEMPLATE_NOISE_WORDS


def named_like(names: Iterable[str], templates: Iterable[str]) -> dict[str, str]:
    """Locust names whose words name exactly one route template's words (revenue_report ->
    /api/reports/revenue, invoices_deep -> /api/invoices): the template a name requests, known
    without timing. Names matching no template, or several, are left out."""
    templates = list(templates)
    out = {}
    for name in names:
        words = _stems(name)
        scores = {t: len(words & _stems(t)) for t in templates}
        best = max(scores.values(), default=0)
        winners = [t for t, n in scores.items() if n == best]
        if best > 0 and len(winners) == 1:
            out[name] = winners[0]
    return out


def consistent_votes(spans: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """correlate_requests, where a request may only take a Locust name that belongs to its template.

    Under concurrency a request's statements may start well after its own sample (a pool wait),
    and a later sample of another endpoint then encloses them more tightly. A Locust name
    belongs to the template most of its votes went to (one name requests one URL pattern), so
    each template's requests are correlated again against the samples of its own names only.
    Where a name's words match one template's (``named_like``), that decides its home: under long
    pool waits the votes of a busy template can outnumber a quiet template's own.
    """
    votes = correlate_requests(spans, samples)
    named = votes.drop_nulls("name")
    if named.is_empty():
        return votes
    counts = named.group_by("name", "endpoint").len().sort("len", "endpoint", descending=[True, False])
    home = dict(counts.unique("name", keep="first", maintain_order=True).select("name", "endpoint").iter_rows())
    templates = [t for t in spans["endpoint"].unique().to_list() if t is not None]
    names = samples["endpoint"].drop_nulls().unique().to_list() if "endpoint" in samples.columns else []
    home.update(named_like(names, templates))  # words agree with one template: stronger than timing votes
    parts = []
    for template in spans["endpoint"].unique().to_list():
        own = [name for name, t in home.items() if t == template]
        mine = spans.filter(pl.col("endpoint") == template)
        parts.append(correlate_requests(mine, samples.filter(pl.col("endpoint").is_in(own))))
    return pl.concat(parts)


def _mask(frame: pl.DataFrame, keep) -> pl.Series:
    verdicts = {text: bool(keep(text)) for text in frame["statement"].unique().to_list()}
    return frame["statement"].replace_strict(verdicts, return_dtype=pl.Boolean)


def statements_using_index(frame: pl.DataFrame, table: str, columns: list[str]) -> pl.Series:
    """Per row: does the statement read ``table`` and use every index column in a clause an index serves."""
    table_l, wanted = table.lower(), {c.lower() for c in columns}

    def uses(text: str) -> bool:
        refs = [r for r in table_refs(tokenize(text)) if r.table.lower() == table_l]
        if not refs:
            return False
        names = {table_l} | {r.alias.lower() for r in refs if r.alias}
        used = {c.lower() for q, c in clause_columns(text) if q is None or q.lower() in names}
        return wanted <= used

    return _mask(frame, uses)


def statements_like(frame: pl.DataFrame, texts: Iterable[str]) -> pl.Series:
    """Per row: is the statement one of ``texts`` once normalized (``$1`` and ``%s`` alike)."""
    wanted = {normalize_sql(t) for t in texts}
    return _mask(frame, lambda text: text in wanted)


def attribute_time(frame: pl.DataFrame, mask: pl.Series, min_share: float = MAJORITY_SHARE) -> Attribution | None:
    """The endpoint holding ``min_share`` of the matching statements' time; None when nothing matches."""
    matched = frame.filter(mask)
    total = float(matched["duration_ms"].sum()) if not matched.is_empty() else 0.0
    if total <= 0:
        return None
    per_name = (matched.group_by("name").agg(pl.col("duration_ms").sum().alias("ms"))
                .sort("ms", descending=True, nulls_last=True))
    ms_by_name: dict[str, float] = {}
    top, top_ms = None, 0.0
    for name, ms in per_name.iter_rows():
        if name is not None and top is None:
            top, top_ms = name, ms
        if name is not None and len(ms_by_name) < TOP_NAMES:
            ms_by_name[name] = round(ms, 3)
    unnamed = total - sum(ms_by_name.values())
    if unnamed > 0.0005:
        ms_by_name[UNNAMED] = round(unnamed, 3)
    share = top_ms / total
    return Attribution(endpoint=top if share >= min_share else None, share=round(share, 4), top=top,
                       matched_ms=total, statements=matched.height, ms_by_name=ms_by_name)


def template_names(frame: pl.DataFrame) -> dict[str, str]:
    """Path template -> the Locust name most of its named statements (``name_statements``) carry."""
    if frame.is_empty() or not {"endpoint", "name"} <= set(frame.columns):
        return {}
    named = frame.drop_nulls(["endpoint", "name"])
    if named.is_empty():
        return {}
    counts = named.group_by("endpoint", "name").len().sort("len", "name", descending=[True, False])
    return dict(counts.unique("endpoint", keep="first", maintain_order=True).select("endpoint", "name").iter_rows())
