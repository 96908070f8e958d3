"""``Store``: the connection plus every read and write the toolkit makes on the store's tables.

Callers name what they want (``finish_run``, ``open_changes``, ``search_windows``); the SQL
lives here, next to the schema it depends on (tasks/store/migrations.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import polars as pl

from tasks.store.connection import dumps, now
from tasks.store.learning import LearningQueries
from tasks.store.signatures import SignatureQueries
from tasks.store.views import ViewQueries

# the per-window tables written from frames, and the columns kept (None: the frame's own)
WINDOW_FRAMES: dict[str, tuple[str, ...] | None] = {
    "samples": None, "endpoint_stats": None, "spans": None,
    "resources": ("ts", "role", "pids", "cpu_pct", "rss_bytes", "threads", "ctx_switches", "open_files"),
}


class Store(ViewQueries, SignatureQueries, LearningQueries):
    """The DuckDB store: one file per project, opened per read or transaction (connection.py), numbered migrations.

    Use ``with store.transaction():`` to make several calls atomic; each method joins it.
    """

    # -- runs ------------------------------------------------------------------------------
    def insert_run(
        self, run_id: str, *, target: str, scope: str | None, flow: str | None, spec: Mapping[str, Any],
        goals: list[str], quality: list[str], budget: Mapping[str, Any], code_version: str | None,
        started_at: datetime | None = None,
    ) -> None:
        """Record a run as it starts (status ``running``); ``finish_run`` completes the row."""
        self.insert_row("runs", {
            "run_id": run_id, "target": target, "scope": scope, "flow": flow, "spec": dict(spec),
            "goals": list(goals), "quality": list(quality), "budget": dict(budget),
            "code_version": code_version, "started_at": started_at or now(), "status": "running",
        })

    def finish_run(
        self, run_id: str, status: str, result: Mapping[str, Any], costs: Iterable[tuple[str, float, str]] = (),
    ) -> None:
        """End a run: its status and result document, and one costs row per (kind, amount, unit), atomically."""
        with self.transaction() as con:
            con.execute("UPDATE runs SET ended_at = ?, status = ?, result = ? WHERE run_id = ?",
                        [now(), status, dumps(result), run_id])
            for kind, amount, unit in costs:
                con.execute("INSERT INTO costs VALUES (?, ?, ?, ?, ?, ?)", [run_id, kind, amount, unit, None, now()])

    def run_code_version(self, run_id: str) -> str | None:
        """The code version a run recorded when it started (None if unknown or no such run)."""
        found = self.rows("SELECT code_version FROM runs WHERE run_id = ?", [run_id])
        return found[0]["code_version"] if found else None

    def recent_runs(self, target: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Runs newest first (of ``target``): run_id, target, flow, status, started_at, ended_at, result (JSON text)."""
        sql = "SELECT run_id, target, flow, status, started_at, ended_at, result FROM runs"
        params: list[Any] = []
        if target:
            sql += " WHERE target = ?"
            params.append(target)
        return self.rows(sql + " ORDER BY started_at DESC LIMIT ?", [*params, limit])

    def result_row(self, run_id: str | None = None, target: str | None = None) -> dict[str, Any] | None:
        """run_id, status and result (JSON text) of run ``run_id``, else of the latest run with a
        result (of ``target``); None when there is none."""
        where, params = ["run_id = ?" if run_id else "result IS NOT NULL"], [run_id] if run_id else []
        if target:
            where.append("target = ?")
            params.append(target)
        found = self.rows(f"SELECT run_id, status, result FROM runs WHERE {' AND '.join(where)} "
                          "ORDER BY started_at DESC LIMIT 1", params)
        return found[0] if found else None

    def run_costs(self, run_id: str) -> dict[str, float]:
        """The costs ``finish_run`` recorded for a run, by kind."""
        return {r["kind"]: r["amount"] for r in self.rows("SELECT kind, amount FROM costs WHERE run_id = ?", [run_id])}

    # -- windows and validations -----------------------------------------------------------
    def insert_window(
        self, window_id: str, *, run_id: str, label: str, attempt: int, config: Mapping[str, Any],
        change_id: str | None, started_at: datetime, duration_s: float, warmup_s: float, users: int,
        loadgen_cpu_pct: float | None, valid: bool, reason: str | None,
    ) -> None:
        """One measured window's row (its samples and the rest: ``insert_window_frame``)."""
        self.insert_row("windows", {
            "window_id": window_id, "run_id": run_id, "label": label, "attempt": attempt, "config": dict(config),
            "change_id": change_id, "started_at": started_at, "ended_at": now(), "duration_s": duration_s,
            "warmup_s": warmup_s, "users": users, "loadgen_cpu_pct": loadgen_cpu_pct, "valid": valid,
            "reason": reason,
        })

    def insert_window_frame(self, table: str, window_id: str, frame: pl.DataFrame) -> int:
        """A window's per-request ``samples``, ``endpoint_stats``, ``resources`` series or
        ``spans``, tagged with its id (columns the table does not have are left out)."""
        if table not in WINDOW_FRAMES:
            raise ValueError(f"not a window table: {table!r} (one of {', '.join(WINDOW_FRAMES)})")
        columns = WINDOW_FRAMES[table]
        if columns:
            frame = frame.select([c for c in columns if c in frame.columns])
        return self.insert_frame(table, frame.with_columns(pl.lit(window_id).alias("window_id")))

    def insert_agent_run(self, window_id: str, agent: str, status: str, error: str | None, duration_s: float,
                         observed: Any) -> None:
        """What one agent did in a window (``observed`` stored as JSON)."""
        self.insert_row("agent_runs", {"window_id": window_id, "agent": agent, "status": status, "error": error,
                                       "duration_s": duration_s, "observed": dumps(observed)})

    def insert_finding(self, run_id: str, window_id: str, finding: Mapping[str, Any]) -> None:
        """One finding (``Finding.to_dict()``) with its evidence, estimated gain and candidate as JSON."""
        self.insert_row("findings", {
            "run_id": run_id, "window_id": window_id, "agent": finding["agent"], "kind": finding["kind"],
            "location": finding["location"], "endpoint": finding.get("endpoint"), "severity": finding["severity"],
            "evidence": dumps(finding.get("evidence")), "estimated_gain": dumps(finding.get("estimated_gain")),
            "candidate": dumps(finding.get("candidate")),
        })

    def insert_validation(self, window_id: str, expectation: str, success: bool, observed: Any) -> None:
        """One expectation's outcome on a window; ``observed`` is stored as JSON."""
        self.insert_row("validations", {"window_id": window_id, "expectation": expectation, "success": success,
                                        "observed": dumps(observed), "checked_at": now()})

    def search_windows(
        self, target: str, code_version: str | None, label_prefix: str, *, responses_expectation: str,
        error_expectation: str,
    ) -> list[dict[str, Any]]:
        """Per-endpoint stats rows of earlier windows of ``target`` at ``code_version`` whose label
        starts with ``label_prefix``, oldest first: window_id, config (JSON text), endpoint, requests,
        rps, p50_ms, p95_ms, p99_ms, error_rate, mean_ms, responses_ok.

        A window counts when the gate accepted it, or when its only failed expectations are
        ``error_expectation`` (which must be among them) and ``responses_expectation``.
        ``responses_ok`` is whether every ``responses_expectation`` row of the window succeeded
        (None without one).
        """
        return self.rows(
            "SELECT w.window_id, w.config, e.endpoint, e.requests, e.rps, e.p50_ms, e.p95_ms, e.p99_ms, "
            "e.error_rate, e.mean_ms, (SELECT bool_and(v.success) FROM validations v WHERE v.window_id = w.window_id "
            "AND v.expectation = ?) AS responses_ok FROM windows w JOIN runs r ON r.run_id = w.run_id "
            "JOIN endpoint_stats e ON e.window_id = w.window_id WHERE r.target = ? AND r.code_version IS NOT DISTINCT FROM ? "
            "AND w.label LIKE ? AND (w.valid OR ("
            "EXISTS (SELECT 1 FROM validations v WHERE v.window_id = w.window_id AND v.expectation = ? AND NOT v.success) "
            "AND NOT EXISTS (SELECT 1 FROM validations v WHERE v.window_id = w.window_id AND NOT v.success "
            "AND v.expectation NOT IN (?, ?)))) ORDER BY w.started_at, e.endpoint",
            [responses_expectation, target, code_version, f"{label_prefix}%", error_expectation,
             error_expectation, responses_expectation])

    # -- the change journal ----------------------------------------------------------------
    def insert_change(
        self, change_id: str, *, run_id: str, target: str, seq: int, kind: str, params: Mapping[str, Any],
        description: str | None, risk: str | None,
    ) -> None:
        """Journal a change as ``planned``, before anything is applied."""
        with self.transaction() as con:
            con.execute(
                "INSERT INTO changes (change_id, run_id, target, seq, kind, params, description, risk, "
                "status, planned_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
                [change_id, run_id, target, seq, kind, dumps(params), description, risk, now(), now()],
            )

    def update_change(
        self, change_id: str, status: str, *, reason: str | None = None,
        effect: dict[str, Any] | None = None, undo: dict[str, Any] | None = None,
    ) -> None:
        """Move a journaled change to ``status``; reason, effect and undo are set when given."""
        sets, values = ["status = ?", "updated_at = ?"], [status, now()]
        for column, value in (("reason", reason), ("effect", effect), ("undo", undo)):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(dumps(value) if isinstance(value, dict) else value)
        with self.transaction() as con:
            con.execute(f"UPDATE changes SET {', '.join(sets)} WHERE change_id = ?", [*values, change_id])

    def open_changes(self, target: str | None = None) -> list[dict[str, Any]]:
        """Changes left planned or applied, newest first, with params and undo parsed from JSON."""
        sql = "SELECT * FROM changes WHERE status IN ('planned', 'applied')"
        params: list[Any] = []
        if target:
            sql += " AND target = ?"
            params.append(target)
        rows = self.rows(sql + " ORDER BY planned_at DESC, seq DESC", params)
        for row in rows:
            row["params"] = json.loads(row["params"] or "{}")
            row["undo"] = json.loads(row["undo"] or "{}")
        return rows

    # -- target state (the last kept configuration per target) -----------------------------
    def kept_state(self, target: str) -> dict[str, Any] | None:
        rows = self.rows("SELECT * FROM target_state WHERE target = ?", [target])
        if not rows:
            return None
        row = rows[0]
        return {
            "config": json.loads(row["config"] or "{}"),
            "kept_changes": json.loads(row["kept_changes"] or "[]"),
            "run_id": row["run_id"],
            "code_version": row["code_version"],
        }

    def save_kept_state(
        self, target: str, config: Mapping[str, Any], kept_changes: list[dict[str, Any]],
        run_id: str, code_version: str | None = None,
    ) -> None:
        with self.transaction() as con:
            con.execute("DELETE FROM target_state WHERE target = ?", [target])
            con.execute(
                "INSERT INTO target_state VALUES (?, ?, ?, ?, ?, ?)",
                [target, dumps(dict(config)), dumps(kept_changes), run_id, code_version, now()],
            )

    # -- the advisor's answer cache (tasks/advisor/spend.py keys it) -------------------------
    def cached_answer(self, cache_key: str) -> dict[str, Any] | None:
        """The stored answer for ``cache_key``: answer, model, prompt/completion tokens, outcome; None if none."""
        found = self.rows("SELECT answer, model, prompt_tokens, completion_tokens, outcome FROM llm_answers "
                          "WHERE cache_key = ?", [cache_key])
        return found[0] if found else None

    def save_answer(self, cache_key: str, *, kind: str, location: str, source_hash: str, model: str,
                    prompt_version: str, answer: str, prompt_tokens: int | None,
                    completion_tokens: int | None) -> None:
        """Store (or replace) a model's answer; its outcome is set later by ``set_answer_outcome``."""
        with self.transaction() as con:
            con.execute("DELETE FROM llm_answers WHERE cache_key = ?", [cache_key])
            con.execute("INSERT INTO llm_answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
                        [cache_key, kind, location, source_hash, model, prompt_version, answer,
                         prompt_tokens, completion_tokens, now(), now()])

    def set_answer_outcome(self, cache_key: str, outcome: str | None) -> None:
        """What became of a cached answer: no_patch, does_not_apply, refused, reverted, kept ..."""
        with self.transaction() as con:
            con.execute("UPDATE llm_answers SET outcome = ?, updated_at = ? WHERE cache_key = ?",
                        [outcome, now(), cache_key])
