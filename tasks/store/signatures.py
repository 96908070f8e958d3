"""The store's SQL for run signatures and the histories regression detection reads.

A run's signature (one row per endpoint, plus ``__total__``) summarises the kept state's
agent-free windows as the decisions see them: p50/p95/p99 are geometric means of the windows'
quantiles, gmean_ms (the geometric-mean latency) the geometric mean of the windows' own, rps
the mean of their rates, error rate and bytes per response request-weighted.
The ``__total__`` row also carries the target's CPU milliseconds per request (its psutil series
over the windows' measured part) and the DB time share (DB spans over root spans) of the
profiling windows passed, when they hold traces. Documented in docs/store.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from tasks.store.connection import Connection, dumps, now

TOTAL = "__total__"  # tasks.analysis.stats.TOTAL_ENDPOINT (the store knows nothing above it)
SIGNATURE_METRICS = ("p50_ms", "gmean_ms", "p95_ms", "p99_ms", "rps", "error_rate", "db_time_share",
                     "cpu_ms_per_request", "bytes_per_response")

_SIGNATURE = """
INSERT INTO signatures (run_id, target, load_shape, endpoint, windows, requests, p50_ms, gmean_ms, p95_ms, p99_ms,
                        rps, error_rate, bytes_per_response, window_ids, created_at)
SELECT ?, ?, ?, endpoint, count(*), sum(requests),
       exp(avg(ln(greatest(p50_ms, 1e-9)))), exp(avg(ln(greatest(gmean_ms, 1e-9)))), exp(avg(ln(greatest(p95_ms, 1e-9)))),
       exp(avg(ln(greatest(p99_ms, 1e-9)))), avg(rps),
       sum(error_rate * requests) / nullif(sum(requests), 0),
       sum(bytes_mean * requests) / nullif(sum(requests), 0), ?, ?
FROM endpoint_stats WHERE list_contains(?, window_id) GROUP BY endpoint
"""
_CPU_MS_PER_REQUEST = """
WITH bounds AS (
    SELECT window_id, min(ts) AS t0, max(ts) AS t1, count(*) AS n FROM samples
    WHERE list_contains(?, window_id) GROUP BY window_id),
series AS (
    SELECT r.window_id, r.cpu_pct, r.ts - lag(r.ts) OVER (PARTITION BY r.window_id ORDER BY r.ts) AS dt
    FROM resources r JOIN bounds b ON b.window_id = r.window_id
    WHERE r.role = 'target' AND r.ts BETWEEN b.t0 AND b.t1)
SELECT 1000 * (SELECT sum(dt * coalesce(cpu_pct, 0) / 100) FROM series WHERE dt IS NOT NULL)
       / nullif((SELECT sum(n) FROM bounds), 0)
"""
_DB_TIME_SHARE = """
SELECT least(1.0, sum(CASE WHEN json_extract_string(attributes, '$."db.system"') IS NOT NULL THEN duration_ms END)
       / nullif(sum(CASE WHEN parent_id IS NULL THEN duration_ms END), 0))
FROM spans WHERE list_contains(?, window_id)
"""


class SignatureQueries(Connection):
    """Signatures, their history per target, and the A/A windows that calibrate the detector."""

    def save_signature(self, run_id: str, target: str, load_shape: str, window_ids: Sequence[str],
                       profile_window_ids: Sequence[str] = ()) -> int:
        """Write a run's signature from ``window_ids`` (replacing one written before); rows written."""
        ids = list(window_ids)
        with self.transaction() as con:
            con.execute("DELETE FROM signatures WHERE run_id = ?", [run_id])
            con.execute(_SIGNATURE, [run_id, target, load_shape, dumps(ids), now(), ids])
            cpu = con.execute(_CPU_MS_PER_REQUEST, [ids]).fetchall()[0][0]
            share = con.execute(_DB_TIME_SHARE, [list(profile_window_ids)]).fetchall()[0][0] if profile_window_ids else None
            con.execute("UPDATE signatures SET cpu_ms_per_request = ?, db_time_share = ? "
                        "WHERE run_id = ? AND endpoint = ?", [cpu, share, run_id, TOTAL])
            return int(con.execute("SELECT count(*) FROM signatures WHERE run_id = ?", [run_id]).fetchall()[0][0])

    def has_signatures(self) -> bool:
        """Does the store have the table (a store opened read-only before migration 3 does not)?"""
        return self.has_table("signatures")

    def signature_history(self, target: str | None = None) -> list[dict[str, Any]]:
        """Signature rows oldest run first, with the run's ``started_at``: target, load_shape,
        run_id, endpoint, windows, requests and SIGNATURE_METRICS (none before migration 3)."""
        if not self.has_signatures():
            return []
        present = self.columns("signatures")
        columns = [f"s.{m}" if m in present else f"NULL AS {m}" for m in SIGNATURE_METRICS]
        sql = ("SELECT s.target, s.load_shape, s.run_id, r.started_at, s.endpoint, s.windows, s.requests, "
               f"{', '.join(columns)} FROM signatures s JOIN runs r USING (run_id)")
        params: list[Any] = []
        if target:
            sql += " WHERE s.target = ?"
            params.append(target)
        return self.rows(sql + " ORDER BY s.target, s.load_shape, r.started_at, s.run_id, s.endpoint", params)

    def signature_targets(self) -> list[str]:
        if not self.has_signatures():
            return []
        return [r["target"] for r in self.rows("SELECT DISTINCT target FROM signatures ORDER BY target")]

    def aa_window_stats(self, target: str | None = None) -> list[dict[str, Any]]:
        """Per-endpoint stats of every valid baseline A/A window (``baseline-N``), oldest first:
        target, run_id, window_id, duration_s, users, load (the run spec's load section as JSON
        text; None when the run stored no spec), endpoint, requests, rps, p50_ms, gmean_ms, p95_ms,
        p99_ms, error_rate."""
        gmean = "e.gmean_ms" if "gmean_ms" in self.columns("endpoint_stats") else "NULL AS gmean_ms"  # read-only, unmigrated
        sql = ("SELECT r.target, w.run_id, w.window_id, w.duration_s, w.users, "
               f"CAST(json_extract(r.spec, '$.load') AS VARCHAR) AS load, e.endpoint, e.requests, e.rps, e.p50_ms, {gmean}, e.p95_ms, "
               "e.p99_ms, e.error_rate FROM windows w JOIN runs r USING (run_id) "
               "JOIN endpoint_stats e USING (window_id) WHERE w.valid AND w.label LIKE 'baseline-%'")
        params: list[Any] = []
        if target:
            sql += " AND r.target = ?"
            params.append(target)
        return self.rows(sql + " ORDER BY w.started_at, e.endpoint", params)

    def window_samples(self, window_id: str) -> pl.DataFrame:
        """One window's per-request samples (ts, endpoint, method, latency_ms, status, bytes, error), by time."""
        return self.query("SELECT ts, endpoint, method, latency_ms, status, bytes, error FROM samples "
                          "WHERE window_id = ? ORDER BY ts", [window_id])

    def valid_profile_windows(self, run_id: str) -> list[dict[str, Any]]:
        """A run's valid profiling windows, newest first: window_id, config (JSON text)."""
        return self.rows("SELECT window_id, config FROM windows WHERE run_id = ? AND valid "
                         "AND label LIKE 'profile-%' ORDER BY started_at DESC", [run_id])
