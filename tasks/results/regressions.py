"""Regressions over each target's signature history (``perfagents regressions``).

Per target, load shape, endpoint and metric (tasks/analysis/changepoints.py WORSE_UP), the
runs' signature values form a series; its null is built from the same target's baseline A/A
windows of that endpoint and metric (the ``windows`` table, labels ``baseline-N``) measured
under the same load shape (the run's spec), so every alert carries the false-alarm rate
measured on this store's own noise. Where no run of that shape has A/A windows (runs that
stored no spec), the target's A/A windows of every shape stand in.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from tasks.analysis.changepoints import (
    N_NULL,
    WORSE_UP,
    aa_deviations,
    aa_shifts,
    build_null,
    detect,
)
from tasks.results.signature import stored_load_shape
from tasks.store import Store

TOTAL = "__total__"


def _name(endpoint: str) -> str:
    return "total" if endpoint == TOTAL else endpoint


def find_regressions(store: Store, target: str | None = None) -> dict[str, Any]:
    """``{"regressions": [...], "open_confirmed": n, "series": n, "not_judged": [...]}``.

    Each regression: target, endpoint, metric, run_id and started_at of the run where it
    started, before, after, size (after/before) with ci95, false_alarm_rate, runs_after,
    status (confirmed | suspected), open."""
    history = store.signature_history(target)
    series: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in history:
        series[(row["target"], row["load_shape"], row["endpoint"])].append(row)
    aa: dict[tuple[str, str | None, str], dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for row in store.aa_window_stats(target):
        shape = stored_load_shape(json.loads(row["load"])) if row["load"] else None
        for key in {(row["target"], shape, row["endpoint"]), (row["target"], None, row["endpoint"])}:
            for metric in WORSE_UP:
                aa[key][metric].setdefault(row["run_id"], []).append(row[metric])
    found: list[dict[str, Any]] = []
    not_judged: list[str] = []
    judged = 0
    for (tgt, shape, endpoint), rows in sorted(series.items()):
        windows = aa.get((tgt, shape, endpoint)) or aa[(tgt, None, endpoint)]
        for metric, worse_up in WORSE_UP.items():
            values = [r[metric] for r in rows]
            if any(v is None or v <= 0 for v in values):
                continue
            label = f"{tgt} {_name(endpoint)} {metric}"
            by_run = list(windows[metric].values())  # runs in the order of their first A/A window
            k = int(np.median([r["windows"] for r in rows]))
            null = build_null(np.log(np.asarray(values, dtype=np.float64)), aa_deviations(by_run), k, aa_shifts(by_run))
            if null is None:
                not_judged.append(f"{label}: fewer than 4 A/A window deviations in the store")
                continue
            judged += 1
            for cp in detect(values, null, worse_up=worse_up):
                if not cp.regression:
                    continue
                start = rows[cp.index]
                found.append({
                    "target": tgt, "endpoint": _name(endpoint), "metric": metric, "run_id": start["run_id"],
                    "started_at": str(start["started_at"]), "before": _sig(cp.before), "after": _sig(cp.after),
                    "size": _sig(cp.ratio), "ci95": [_sig(cp.ci95[0]), _sig(cp.ci95[1])],
                    "false_alarm_rate": round(cp.false_alarm_rate, 4), "null_series": N_NULL,
                    "runs_after": cp.runs_after,
                    "status": "confirmed" if cp.confirmed else "suspected", "open": cp.open,
                })
    return {"regressions": found, "open_confirmed": sum(1 for r in found if r["open"] and r["status"] == "confirmed"),
            "series": judged, "not_judged": not_judged}


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def render_regressions(found: dict[str, Any]) -> str:
    """The regressions as a markdown table (the nightly check's Prefect artifact)."""
    lines = [f"# Regressions: {found['series']} series judged, {found['open_confirmed']} confirmed and open", ""]
    if found["regressions"]:
        lines += ["| target | endpoint | metric | since run | size | 95% CI | false-alarm rate | status |",
                  "|---|---|---|---|---:|---|---:|---|"]
        lines += [f"| {r['target']} | {r['endpoint']} | {r['metric']} | {r['run_id']} | x{r['size']:.3g} | "
                  f"[{r['ci95'][0]:.3g}, {r['ci95'][1]:.3g}] | {false_alarm_text(r)} | {r['status']}, "
                  f"{'open' if r['open'] else 'closed'} |" for r in found["regressions"]]
    else:
        lines.append("No regression found.")
    lines += [f"- not judged: {line}" for line in found["not_judged"]]
    return "\n".join(lines) + "\n"


def false_alarm_text(regression: dict[str, Any]) -> str:
    """The measured false-alarm rate; zero in N simulated null series reads ``< 1/N``."""
    rate = regression["false_alarm_rate"]
    return f"< {1 / regression['null_series']:.2%}" if rate == 0 else f"{rate:.2%}"
