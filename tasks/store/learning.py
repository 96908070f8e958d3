"""The store's SQL for learning from every run: what each tried change was estimated to gain, and
what its decision measured (``change_estimates``, migration 4; documented in docs/store.md).

A row is written when the change is journaled (the estimate: the candidate's expected gain and
the finding it rests on, with the what-if ratio, planner cost and share of time when the
finding has them) and completed when the change is settled (the measurement: kept, reverted or
failed, and the decision's ratio with its 95% interval). Changes journaled before the table
existed have no row: ``legacy_changes`` lists them with what is needed to rebuild their estimate
(tasks/search/estimates.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tasks.store.connection import Connection, now

ESTIMATE_COLUMNS = ("change_kind", "basis", "agent", "location", "endpoint", "risk", "expected_gain",
                    "calibrated_gain", "calibration", "whatif_ratio", "cost_before", "cost_after", "share",
                    "estimated_gain", "evidence")
RESTORED_REASON = "restored from the last kept state"  # tasks/loop.py restore_kept: re-applied, not tried


class LearningQueries(Connection):
    def has_estimates(self) -> bool:
        """Whether the store has the table (a store opened read-only may predate migration 4)."""
        return bool(self.rows("SELECT 1 FROM information_schema.tables WHERE table_name = 'change_estimates'"))

    def insert_estimate(self, change_id: str, *, run_id: str, target: str, estimate: Mapping[str, Any]) -> None:
        """What a change was estimated to gain, as it is journaled (keys: ``ESTIMATE_COLUMNS``)."""
        row: dict[str, Any] = {"change_id": change_id, "run_id": run_id, "target": target, "estimated_at": now()}
        row.update({k: estimate.get(k) for k in ESTIMATE_COLUMNS})
        with self.transaction() as con:
            con.execute("DELETE FROM change_estimates WHERE change_id = ?", [change_id])
            self.insert_row("change_estimates", row)

    def settle_estimate(self, change_id: str, outcome: str, effect: Mapping[str, Any] | None) -> None:
        """What the decision measured: the outcome and, when it was judged, the ratio and its interval."""
        effect = effect or {}
        ci = effect.get("ci95") or [None, None]
        windows = effect.get("windows_measured")
        with self.transaction() as con:
            con.execute(
                "UPDATE change_estimates SET outcome = ?, metric = ?, measured_endpoint = ?, measured_ratio = ?, "
                "measured_lo = ?, measured_hi = ?, windows = ?, measured_at = ? WHERE change_id = ?",
                [outcome, effect.get("metric"), effect.get("endpoint"), effect.get("ratio"), ci[0], ci[1],
                 windows if isinstance(windows, int) else None, now(), change_id])

    def learning_rows(self) -> list[dict[str, Any]]:
        """Every settled estimate, oldest first, with its run's start time (JSON columns parsed)."""
        if not self.has_estimates():
            return []
        rows = self.rows(
            "SELECT e.*, r.started_at AS run_started_at FROM change_estimates e JOIN runs r USING (run_id) "
            "WHERE e.outcome IS NOT NULL ORDER BY r.started_at, e.estimated_at")
        for row in rows:
            for column in ("calibration", "estimated_gain", "evidence"):
                row[column] = json.loads(row[column]) if row[column] else None
        return rows

    def legacy_changes(self) -> list[dict[str, Any]]:
        """Settled changes without an estimate row (journaled before migration 4), oldest first:
        change_id, run_id, target, kind, params, description, risk, status, reason, effect, planned_at,
        and the run's spec and start time. Restored changes and the search's trials are left out."""
        estimated = ("AND NOT EXISTS (SELECT 1 FROM change_estimates e WHERE e.change_id = c.change_id) "
                     if self.has_estimates() else "")
        rows = self.rows(
            "SELECT c.change_id, c.run_id, c.target, c.kind, c.params, c.description, c.risk, c.status, c.reason, c.effect, "
            "c.planned_at, r.spec, r.started_at AS run_started_at FROM changes c JOIN runs r USING (run_id) "
            "WHERE c.status IN ('kept', 'reverted') AND c.kind <> 'set_config' "
            f"AND c.reason IS DISTINCT FROM ? {estimated}ORDER BY r.started_at, c.seq", [RESTORED_REASON])
        for row in rows:
            for column in ("params", "effect", "spec"):
                row[column] = json.loads(row[column]) if row[column] else None
        return rows

    def findings_before(self, run_id: str, until: Any = None) -> list[dict[str, Any]]:
        """A run's findings (JSON parsed) from windows that started before ``until`` (all without it)."""
        sql = ("SELECT f.agent, f.kind, f.location, f.endpoint, f.severity, f.evidence, f.estimated_gain, "
               "f.candidate FROM findings f LEFT JOIN windows w USING (window_id) WHERE f.run_id = ?")
        params: list[Any] = [run_id]
        if until is not None:
            sql += " AND (w.started_at IS NULL OR w.started_at <= ?)"
            params.append(until)
        rows = self.rows(sql, params)
        for row in rows:
            for column in ("evidence", "estimated_gain", "candidate"):
                row[column] = json.loads(row[column]) if row[column] else None
        return rows

