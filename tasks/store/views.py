"""The store's SQL for watching runs: the current window's progress, and what the dashboard shows.

``live_windows`` holds, per run, the window under load right now (elapsed, requests, p50/p95
so far), rewritten every few seconds by the run (tasks/live.py) and marked done when the window
ends; the window's own rows arrive in ``windows`` and the rest in the same transaction as ever.
The rest are reads: runs with their before/after p95 and rps (from the result document once a
run ended, from its baseline A/A windows while it runs), a run's windows per endpoint, its
journaled changes (decisions) and findings, and a target's kept changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.store.connection import Connection, now

TOTAL = "__total__"
_RUNS = f"""
SELECT r.run_id, r.target, r.flow, r.scope, r.status, r.started_at, r.ended_at,
       TRY_CAST(json_extract_string(r.result, '$.baseline.total.p95_ms') AS DOUBLE) AS result_before_p95_ms,
       TRY_CAST(json_extract_string(r.result, '$.baseline.total.rps') AS DOUBLE) AS result_before_rps,
       TRY_CAST(json_extract_string(r.result, '$.final.total.p95_ms') AS DOUBLE) AS after_p95_ms,
       TRY_CAST(json_extract_string(r.result, '$.final.total.rps') AS DOUBLE) AS after_rps,
       json_extract_string(r.result, '$.stop_reason') AS stop_reason,
       b.p95_ms AS baseline_p95_ms, b.rps AS baseline_rps,
       (SELECT count(*) FROM windows w WHERE w.run_id = r.run_id) AS windows,
       (SELECT count(*) FROM changes c WHERE c.run_id = r.run_id AND c.status = 'kept') AS kept
FROM runs r LEFT JOIN (
    SELECT w.run_id, exp(avg(ln(greatest(e.p95_ms, 1e-9)))) AS p95_ms, avg(e.rps) AS rps
    FROM windows w JOIN endpoint_stats e USING (window_id)
    WHERE w.valid AND w.label LIKE 'baseline-%' AND e.endpoint = '{TOTAL}' GROUP BY w.run_id) b USING (run_id)
"""


class ViewQueries(Connection):
    """Live window progress, and the reads behind the dashboard (tasks/results/dashboard/)."""

    # -- the window under load -------------------------------------------------------------
    def save_live_window(self, run_id: str, row: Mapping[str, Any]) -> None:
        """Replace the run's live row: label, attempt, started_at, planned_s, elapsed_s, requests,
        errors, p50_ms, p95_ms, rps, done (updated_at is set here)."""
        with self.transaction() as con:
            con.execute("DELETE FROM live_windows WHERE run_id = ?", [run_id])
            self.insert_row("live_windows", {**row, "run_id": run_id, "updated_at": now()})

    def live_windows(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The live rows (of ``run_id``), newest first; none in a store from before migration 4."""
        if not self.has_table("live_windows"):
            return []
        where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        return self.rows(f"SELECT * FROM live_windows {where} ORDER BY updated_at DESC", params)

    # -- runs ------------------------------------------------------------------------------
    def run_summaries(self, target: str | None = None, *, run_id: str | None = None, limit: int = 200,
                      oldest_first: bool = False) -> list[dict[str, Any]]:
        """Runs (of ``target``, or the one ``run_id``) newest first: run_id, target, flow, scope, status,
        started_at, ended_at, the result's before/after total p95 and rps (result_before_p95_ms,
        result_before_rps, after_p95_ms, after_rps), the baseline windows' (baseline_p95_ms,
        baseline_rps: geometric mean of their p95s, mean rps), stop_reason, windows, kept."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("r.target", target), ("r.run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"{_RUNS} {'WHERE ' + ' AND '.join(where) if where else ''}"
        order = "ASC" if oldest_first else "DESC"
        return self.rows(f"{sql} ORDER BY r.started_at {order}, r.run_id LIMIT ?", [*params, limit])

    def run_windows(self, run_id: str) -> list[dict[str, Any]]:
        """A run's windows in the order measured, one row per endpoint (``__total__`` included):
        window_id, label, attempt, change_id, started_at, ended_at, duration_s, warmup_s, valid,
        reason, config (JSON text), endpoint, requests, rps, p50_ms, p95_ms, p99_ms, error_rate."""
        return self.rows(
            "SELECT w.window_id, w.label, w.attempt, w.change_id, w.started_at, w.ended_at, w.duration_s, "
            "w.warmup_s, w.valid, w.reason, w.config, e.endpoint, e.requests, e.rps, e.p50_ms, e.p95_ms, "
            "e.p99_ms, e.error_rate FROM windows w LEFT JOIN endpoint_stats e USING (window_id) "
            "WHERE w.run_id = ? ORDER BY w.ended_at, w.window_id, e.endpoint", [run_id])

    def run_changes(self, run_id: str) -> list[dict[str, Any]]:
        """A run's journaled changes in order: change_id, seq, kind, description, risk, status,
        reason, effect and params (JSON text), planned_at, updated_at."""
        return self.rows("SELECT change_id, seq, kind, description, risk, status, reason, effect, params, "
                         "planned_at, updated_at FROM changes WHERE run_id = ? ORDER BY seq, planned_at", [run_id])

    def run_findings(self, run_id: str) -> list[dict[str, Any]]:
        """A run's findings, every profiling window's: window_id, agent, kind, location, endpoint,
        severity, evidence, estimated_gain, candidate (JSON text)."""
        return self.rows("SELECT f.window_id, f.agent, f.kind, f.location, f.endpoint, f.severity, f.evidence, "
                         "f.estimated_gain, f.candidate FROM findings f LEFT JOIN windows w USING (window_id) "
                         "WHERE f.run_id = ? ORDER BY w.ended_at", [run_id])

    # -- targets ---------------------------------------------------------------------------
    def targets(self) -> list[str]:
        return [r["target"] for r in self.rows("SELECT DISTINCT target FROM runs ORDER BY target")]

    def kept_changes_of(self, target: str) -> list[dict[str, Any]]:
        """Every change kept on ``target``, oldest first: run_id, change_id, kind, description, effect, updated_at."""
        return self.rows("SELECT run_id, change_id, kind, description, effect, updated_at FROM changes "
                         "WHERE target = ? AND status = 'kept' ORDER BY updated_at", [target])
