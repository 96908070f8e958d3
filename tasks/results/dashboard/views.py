"""What the dashboard shows, as JSON, from the store's reads (tasks/store/views.py).

- ``runs_view``: every run with its before/after total p95 and rps (``before_*`` from the result,
  or while the run goes on from its baseline A/A windows; ``after_*`` once it ended).
- ``run_view``: one run: the window under load now (``live``), each finished window's per-endpoint
  p95 and rps, every decision (the journal: ratio, 95% interval, reason) and the findings ranked
  (most severe first, then the larger resource share; one per agent, kind and location).
- ``history_view``: one target: its runs over time, the per-endpoint p95/rps of each run's
  signature, the changes it kept, and the regressions ``perfagents regressions`` would report.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.findings import IMPACT_KEYS, SEVERITY_RANK
from tasks.store import Store

TOTAL = "__total__"
SWITCHED_OFF = "switched off for"  # tasks/trial.py: a change off for an A window, on again after it
LIVE_STALE_S = 120.0  # a live row untouched this long belongs to a run that died: not shown as under load
_STATS = ("requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate")


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def report_path(reports: Path, run_id: str) -> Path:
    return reports / f"report-{run_id}.html"  # tasks/results/report.py write_reports


def run_summary(row: dict[str, Any], reports: Path) -> dict[str, Any]:
    before_p95 = row["result_before_p95_ms"] if row["result_before_p95_ms"] is not None else row["baseline_p95_ms"]
    before_rps = row["result_before_rps"] if row["result_before_rps"] is not None else row["baseline_rps"]
    return {
        "run_id": row["run_id"], "target": row["target"], "status": row["status"], "flow": row["flow"],
        "scope": row["scope"], "started_at": _iso(row["started_at"]), "ended_at": _iso(row["ended_at"]),
        "before_p95_ms": before_p95, "before_rps": before_rps,
        "after_p95_ms": row["after_p95_ms"], "after_rps": row["after_rps"],
        "windows": row["windows"], "kept": row["kept"], "stop_reason": row["stop_reason"],
        "report": f"/reports/{row['run_id']}" if report_path(reports, row["run_id"]).is_file() else None,
    }


def runs_view(store: Store, reports: Path, target: str | None = None) -> list[dict[str, Any]]:
    with store.session():
        return [run_summary(row, reports) for row in store.run_summaries(target)]


def live_row(row: dict[str, Any] | None, now: datetime | None = None) -> dict[str, Any] | None:
    """The live row as JSON, with ``under_load`` (not done, and fresh: LIVE_STALE_S)."""
    if row is None:
        return None
    age = ((now or datetime.now(UTC)) - row["updated_at"]).total_seconds() if row["updated_at"] else None
    out: dict[str, Any] = {k: _iso(v) for k, v in row.items()}
    out["under_load"] = not row["done"] and age is not None and age < LIVE_STALE_S
    return out


def windows_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per window, in the order measured, its endpoints' stats under ``endpoints``
    and all of them together under ``total``."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        window = out.setdefault(row["window_id"], {
            "window_id": row["window_id"], "label": row["label"], "attempt": row["attempt"],
            "change_id": row["change_id"], "started_at": _iso(row["started_at"]), "ended_at": _iso(row["ended_at"]),
            "duration_s": row["duration_s"], "warmup_s": row["warmup_s"], "valid": row["valid"],
            "reason": row["reason"], "config": _json(row["config"]), "endpoints": {}, "total": None})
        if row["endpoint"] is None:
            continue
        stats = {k: row[k] for k in _STATS}
        if row["endpoint"] == TOTAL:
            window["total"] = stats
        else:
            window["endpoints"][row["endpoint"]] = stats
    return list(out.values())


def change_json(row: dict[str, Any], running: bool = False) -> dict[str, Any]:
    """A journaled change; while its run goes on, one not yet kept or reverted for good (applied, or
    switched off for an interleaved A window: tasks/trial.py) is ``on trial``."""
    effect = _json(row["effect"]) or {}
    status = row["status"]
    if running and (status in ("planned", "applied") or (row["reason"] or "").startswith(SWITCHED_OFF)):
        status = "on trial"
    return {"change_id": row["change_id"], "seq": row["seq"], "kind": row["kind"], "description": row["description"],
            "risk": row["risk"], "status": status, "journal_status": row["status"], "reason": row["reason"],
            "params": _json(row["params"]),
            "endpoint": effect.get("endpoint"), "metric": effect.get("metric"), "ratio": effect.get("ratio"),
            "ci95": effect.get("ci95"), "tail": effect.get("tail"), "regime": effect.get("regime"),
            "planned_at": _iso(row["planned_at"]), "updated_at": _iso(row["updated_at"])}


def ranked_findings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest of each (agent, kind, location, endpoint), most severe first, then the larger
    resource share, then those with a candidate change (as the report ranks them)."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # oldest window first: a later one replaces it
        gain = _json(row["estimated_gain"]) or {}
        shares = [float(v) for k in IMPACT_KEYS if isinstance(v := gain.get(k), int | float)]
        latest[(row["agent"], row["kind"], row["location"], row["endpoint"])] = {
            "agent": row["agent"], "kind": row["kind"], "location": row["location"], "endpoint": row["endpoint"],
            "severity": row["severity"], "impact": max(shares, default=0.0), "estimated_gain": gain,
            "candidate": (_json(row["candidate"]) or {}).get("description"), "evidence": _json(row["evidence"])}
    return sorted(latest.values(), key=lambda f: (-SEVERITY_RANK.get(f["severity"], 0), -f["impact"],
                                                  f["candidate"] is None, f["agent"], f["kind"], f["location"]))


def run_view(store: Store, run_id: str, reports: Path) -> dict[str, Any] | None:
    with store.session():
        found = store.run_summaries(run_id=run_id, limit=1)
        if not found:
            return None
        live = live_row(next(iter(store.live_windows(run_id)), None))
        windows = windows_json(store.run_windows(run_id))
        if live and any((w["label"], w["attempt"]) == (live["label"], live["attempt"]) for w in windows):
            live["under_load"] = False  # its window is stored: the run missed marking the row done
        running = found[0]["status"] == "running"
        return {"run": run_summary(found[0], reports), "live": live, "windows": windows,
                "changes": [change_json(r, running) for r in store.run_changes(run_id)],
                "findings": ranked_findings(store.run_findings(run_id))}


def history_view(store: Store, target: str, reports: Path,
                 regressions: Callable[[Store, str], dict[str, Any]]) -> dict[str, Any] | None:
    with store.session():
        runs = [run_summary(r, reports) for r in store.run_summaries(target, limit=1000, oldest_first=True)]
        if not runs:
            return None
        series: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for row in store.signature_history(target):
            name = "total" if row["endpoint"] == TOTAL else row["endpoint"]
            for metric in ("p95_ms", "rps"):
                series.setdefault(name, {}).setdefault(metric, []).append(
                    {"run_id": row["run_id"], "started_at": _iso(row["started_at"]), "value": row[metric]})
        kept = [{**{k: _iso(v) for k, v in r.items() if k != "effect"},
                 **{k: (_json(r["effect"]) or {}).get(k) for k in ("endpoint", "metric", "ratio", "ci95")}}
                for r in store.kept_changes_of(target)]
        found = regressions(store, target)
    return {"target": target, "runs": runs, "series": series, "kept": kept,
            "regressions": found["regressions"], "not_judged": found["not_judged"]}
