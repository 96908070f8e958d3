"""Aggregate captured statements: per normalized statement, per endpoint, and N+1 patterns.

Input is the frame of tasks.agents.database.sqlcapture.read_statements. Endpoints are the Locust
request name the request carried (the load generator's ``X-Perfagents-Request`` header: exact),
else path templates: the framework's route template when the capture saw one (Starlette:
``/users/{uid}``), else the raw path with numeric / hex-id segments replaced by ``{n}``.
``map_endpoints`` then names templates after the Locust requests when a Locust name or a spec
endpoint path has the same template, and ``correlate_endpoints`` by time when names are not
paths (a locustfile's ``name=``) and the requests carried none;
``correlate_requests`` names each request on its own (tasks.agents.database.sql.attribution uses it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np
import polars as pl

from tasks.agents.database.sql.text import normalize_sql, statement_kind

N_PLUS_ONE_MIN = 5  # one normalized statement this many times within one request
FALLBACK_GAP_MS = 1.0  # without request ids: a pause this long in a thread starts a new "request"
DISTRIBUTION_BINS = 10  # most frequent per-request counts shown in evidence
CORRELATION_START_SLACK_S = 0.0002  # the client stamps ts before sending: statements start later
CORRELATION_END_SLACK_S = 0.002  # latency and statement ends come from different timers
CORRELATION_LOOKBACK = 32  # same-name samples started before a request that may enclose it
CORRELATION_MIN_VOTES = 0.6  # share of a template's requests that must vote for the name
CONTROL_KINDS = frozenset({"begin", "commit", "end", "rollback", "savepoint", "release", "pragma"})
_ID_SEGMENT = re.compile(r"^(\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})$")
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


def path_template(path: str | None) -> str | None:
    """``/users/42/orders?x=1`` -> ``/users/{n}/orders`` (query dropped, id-like segments templated)."""
    if not path:
        return None
    path = path.split("?", 1)[0]
    return "/".join("{n}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


def match_key(template: str) -> str:
    """A comparison key: any ``{...}`` placeholder or id-like segment -> ``{}``."""
    templated = path_template(_PLACEHOLDER.sub("{}", template)) or ""
    return templated.replace("{n}", "{}").rstrip("/") or "/"


def add_statement_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``statement`` (normalized SQL), ``kind`` (first keyword) and ``endpoint`` (template)."""
    unique_sql = frame["sql"].unique().to_list()
    normalized = {sql: normalize_sql(sql) for sql in unique_sql}
    kinds = {sql: statement_kind(sql) for sql in unique_sql}
    return add_endpoint_column(frame).with_columns(
        pl.col("sql").replace_strict(normalized, return_dtype=pl.String).alias("statement"),
        pl.col("sql").replace_strict(kinds, return_dtype=pl.String).alias("kind"),
    )


def add_endpoint_column(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``endpoint``: the Locust name the request carried (exact), else the route template,
    else the raw path with id segments templated."""
    names = frame["request_name"] if "request_name" in frame.columns else pl.Series([None] * frame.height, dtype=pl.String)
    keys = list(zip(frame["path"].to_list(), frame["route"].to_list(), names.to_list(), strict=True))
    templates = {key: key[2] or key[1] or path_template(key[0]) for key in set(keys)}
    return frame.with_columns(pl.Series("endpoint", [templates[key] for key in keys], dtype=pl.String))


def attribute_requests(frame: pl.DataFrame, gap_ms: float = FALLBACK_GAP_MS) -> pl.DataFrame:
    """Fill missing request ids with thread bursts (statements of one thread without a pause).

    Adds ``attributed`` (True where the capture saw the request itself).
    """
    frame = frame.with_columns(pl.col("request_id").is_not_null().alias("attributed"))
    if frame["attributed"].all():
        return frame
    ordered = frame.sort("pid", "thread", "ts")
    end_prev = (pl.col("ts") + pl.col("duration_ms") / 1000).shift(1).over("pid", "thread")
    new_burst = end_prev.is_null() | ((pl.col("ts") - end_prev) * 1000 > gap_ms)
    burst = new_burst.cast(pl.Int64).cum_sum().over("pid", "thread")
    pseudo = pl.format("t:{}:{}:{}", pl.col("pid"), pl.col("thread"), burst)
    return ordered.with_columns(pl.coalesce("request_id", pseudo).alias("request_id")).sort("ts")


def aggregate_statements(frame: pl.DataFrame) -> pl.DataFrame:
    """Per normalized statement: calls, total/mean/p50/p95/max ms, rows, share of DB time."""
    if frame.is_empty():
        return pl.DataFrame(schema={"statement": pl.String, "calls": pl.UInt32, "total_ms": pl.Float64})
    total = frame["duration_ms"].sum() or 1.0
    return (
        frame.group_by("statement")
        .agg(
            pl.len().alias("calls"),
            pl.col("duration_ms").sum().alias("total_ms"),
            pl.col("duration_ms").mean().alias("mean_ms"),
            pl.col("duration_ms").median().alias("p50_ms"),
            pl.col("duration_ms").quantile(0.95, interpolation="linear").alias("p95_ms"),
            pl.col("duration_ms").max().alias("max_ms"),
            pl.col("rows").mean().alias("rows_mean"),
            pl.col("kind").first(),
            pl.col("request_id").n_unique().alias("requests"),
        )
        .with_columns((pl.col("total_ms") / total).alias("share"))
        .sort("total_ms", descending=True)
    )


def aggregate_endpoints(frame: pl.DataFrame) -> pl.DataFrame:
    """Per endpoint template: requests seen, statements and DB ms per request."""
    with_endpoint = frame.filter(pl.col("endpoint").is_not_null())
    if with_endpoint.is_empty():
        return pl.DataFrame(schema={"endpoint": pl.String, "requests": pl.UInt32})
    return (
        with_endpoint.group_by("endpoint")
        .agg(
            pl.col("request_id").n_unique().alias("requests"),
            pl.len().alias("statements"),
            pl.col("duration_ms").sum().alias("db_ms"),
        )
        .with_columns(
            (pl.col("statements") / pl.col("requests")).alias("statements_per_request"),
            (pl.col("db_ms") / pl.col("requests")).alias("db_ms_per_request"),
        )
        .sort("db_ms", descending=True)
    )


def statement_endpoints(frame: pl.DataFrame) -> dict[str, list[dict]]:
    """statement -> [{endpoint, calls, total_ms}] by total time, for evidence."""
    grouped = (
        frame.group_by("statement", "endpoint")
        .agg(pl.len().alias("calls"), pl.col("duration_ms").sum().alias("total_ms"))
        .sort("total_ms", descending=True)
    )
    out: dict[str, list[dict]] = {}
    for row in grouped.iter_rows(named=True):
        out.setdefault(row["statement"], []).append(
            {"endpoint": row["endpoint"], "calls": row["calls"], "total_ms": round(row["total_ms"], 3)}
        )
    return out


def find_n_plus_one(frame: pl.DataFrame, min_repeats: int = N_PLUS_ONE_MIN) -> list[dict]:
    """One normalized statement run >= ``min_repeats`` times within one request, per endpoint."""
    if frame.is_empty():
        return []
    if "attributed" not in frame.columns:
        frame = attribute_requests(frame)
    work = frame.filter(~pl.col("kind").is_in(list(CONTROL_KINDS)))
    per_endpoint = frame.group_by("endpoint").agg(pl.col("request_id").n_unique().alias("endpoint_requests"))
    per_request = work.group_by("request_id", "statement", "endpoint").agg(
        pl.len().alias("count"),
        pl.col("duration_ms").sum().alias("ms"),
        pl.col("attributed").all().alias("attributed"),
    )
    repeated = per_request.filter(pl.col("count") >= min_repeats)
    if repeated.is_empty():
        return []
    summary = (
        repeated.group_by("statement", "endpoint")
        .agg(
            pl.len().alias("requests"),
            pl.col("count").min().alias("count_min"),
            pl.col("count").median().alias("count_median"),
            pl.col("count").quantile(0.95, interpolation="nearest").alias("count_p95"),
            pl.col("count").max().alias("count_max"),
            pl.col("ms").mean().alias("ms_per_request"),
            (pl.col("ms").sum() / pl.col("count").sum()).alias("mean_ms"),
            pl.col("attributed").all().alias("attributed"),
            pl.col("count").alias("counts"),
        )
        .join(per_endpoint, on="endpoint", how="left", nulls_equal=True)
        .sort("ms_per_request", descending=True)
    )
    out = []
    for row in summary.iter_rows(named=True):
        counts = Counter(row.pop("counts"))
        row["distribution"] = {str(k): v for k, v in sorted(counts.most_common(DISTRIBUTION_BINS))}
        out.append(row)
    return out


def map_endpoints(templates: Iterable[str | None], spec_endpoints: Iterable[tuple[str, str]],
                  sample_names: Iterable[str]) -> dict[str, str]:
    """Endpoint template -> Locust request name, where one is recognisable.

    A spec endpoint ``{name, path}`` matches when its path (``{int:1:50}`` etc. as placeholders,
    query dropped) has the template's key; a Locust name that is itself a path matches the same way.
    """
    by_key: dict[str, str] = {}
    for name, path in spec_endpoints:
        by_key.setdefault(match_key(path), name)
    for name in sample_names:
        if name.startswith("/"):
            by_key.setdefault(match_key(name), name)
    return {t: by_key[match_key(t)] for t in templates if t and match_key(t) in by_key}


def request_spans(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per attributed request: endpoint template, method, first statement start, last end."""
    attributed = frame.filter(pl.col("request_id").is_not_null() & pl.col("endpoint").is_not_null())
    if "attributed" in attributed.columns:
        attributed = attributed.filter(pl.col("attributed"))
    return attributed.group_by("request_id").agg(
        pl.col("endpoint").first(),
        pl.col("method").first(),
        pl.col("ts").min().alias("start"),
        (pl.col("ts") + pl.col("duration_ms") / 1000).max().alias("end"),
    )


def _tightest_gaps(first: np.ndarray, last: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per span: seconds from the latest-starting sample that encloses it to its first statement."""
    gap = np.full(first.shape, np.inf)
    idx = np.searchsorted(starts, first, side="right") - 1
    for back in range(CORRELATION_LOOKBACK):
        j = idx - back
        jj = np.clip(j, 0, None)
        hit = (j >= 0) & (ends[jj] >= last) & np.isinf(gap)
        gap = np.where(hit, first - starts[jj], gap)
    return gap


def correlate_requests(spans: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """Each request span (``request_spans``) with ``name``: the Locust name of its own sample, or null.

    A request's sample is the one that encloses its statements (started before the first, ended
    after the last; same method) and started last: the request's own, not some slow one that
    merely was in flight.
    """
    schema = {"request_id": pl.String, "endpoint": pl.String, "name": pl.String}
    needed = {"ts", "latency_ms", "endpoint"}
    if spans.is_empty() or samples.is_empty() or not needed <= set(samples.columns):
        return pl.DataFrame({"request_id": spans["request_id"], "endpoint": spans["endpoint"],
                             "name": [None] * spans.height}, schema=schema)
    first, last = spans["start"].to_numpy(), spans["end"].to_numpy()
    span_methods = spans["method"].to_numpy()
    best_gap = np.full(first.shape, np.inf)
    best_name = np.full(first.shape, None, dtype=object)
    for name in samples["endpoint"].unique().to_list():
        mine = samples.filter(pl.col("endpoint") == name).sort("ts")
        starts = mine["ts"].to_numpy() - CORRELATION_START_SLACK_S
        ends = mine["ts"].to_numpy() + mine["latency_ms"].to_numpy() / 1000 + CORRELATION_END_SLACK_S
        gap = _tightest_gaps(first, last, starts, ends)
        if "method" in mine.columns:
            methods = [m for m in mine["method"].unique().to_list() if m]
            if methods:
                gap = np.where(np.isin(span_methods, methods), gap, np.inf)
        better = gap < best_gap
        best_gap = np.where(better, gap, best_gap)
        best_name[better] = name
    return pl.DataFrame({"request_id": spans["request_id"], "endpoint": spans["endpoint"],
                         "name": best_name.tolist()}, schema=schema)


def correlate_endpoints(spans: pl.DataFrame, samples: pl.DataFrame, *,
                        min_votes: float = CORRELATION_MIN_VOTES) -> dict[str, str]:
    """Endpoint template -> Locust name, by time, for names that are not paths (``name=``).

    Each request the capture saw votes for the Locust name of its own sample
    (``correlate_requests``); a template takes the name that won at least ``min_votes`` of its
    requests.
    """
    if spans.is_empty() or samples.is_empty() or not {"ts", "latency_ms", "endpoint"} <= set(samples.columns):
        return {}
    return vote_endpoints(correlate_requests(spans, samples), min_votes=min_votes)


def vote_endpoints(votes: pl.DataFrame, *, min_votes: float = CORRELATION_MIN_VOTES) -> dict[str, str]:
    """Template -> the Locust name that at least ``min_votes`` of its requests (``correlate_requests``) won."""
    if votes.is_empty():
        return {}
    tally = votes.group_by("endpoint").agg(
        pl.len().alias("requests"),
        pl.col("name").drop_nulls().mode().first().alias("winner"),
    )
    out: dict[str, str] = {}
    for template, requests, winner in tally.iter_rows():
        if winner is None:
            continue
        won = votes.filter((pl.col("endpoint") == template) & (pl.col("name") == winner)).height
        if won >= min_votes * requests:
            out[template] = winner
    return out
