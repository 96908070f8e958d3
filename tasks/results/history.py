"""Earlier runs from the store: the history table and drift against them."""

from __future__ import annotations

import json
from typing import Any

from tasks.store import Store


def run_history(store: Store, target: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    out = []
    for row in store.recent_runs(target, limit):
        result = json.loads(row.pop("result") or "{}")
        base, final = result.get("baseline", {}).get("total", {}), result.get("final", {}).get("total", {})
        out.append({
            **row,
            "baseline_p95_ms": base.get("p95_ms"), "final_p95_ms": final.get("p95_ms"),
            "baseline_rps": base.get("rps"), "final_rps": final.get("rps"),
            "kept": sum(1 for c in result.get("changes", []) if c.get("status") == "kept"),
            "final_endpoints": result.get("final", {}).get("endpoints", {}),
            "noise_rel": result.get("noise_floor", {}).get("p95_rel"),
        })
    return out


def drift(current_baseline: dict[str, Any], earlier: list[dict[str, Any]], noise_rel: float) -> dict[str, Any]:
    """Compare this run's starting point with the previous run's final state, per endpoint.

    A ratio beyond 1 + 2 x noise floor on p95 is flagged as a regression.
    """
    previous = next((r for r in earlier if r.get("status") not in (None, "failed", "running") and r.get("final_p95_ms")), None)
    if previous is None:
        return {"previous_run": None, "regression": False, "endpoints": {}, "note": "no earlier run of this target"}
    limit = 1 + 2 * max(noise_rel, 0.02)
    endpoints = {}
    for name, now_stats in current_baseline.get("endpoints", {}).items():
        before = previous["final_endpoints"].get(name)
        if not before or not before.get("p95_ms"):
            continue
        ratio = now_stats["p95_ms"] / before["p95_ms"]
        endpoints[name] = {"previous_p95_ms": before["p95_ms"], "p95_ms": now_stats["p95_ms"],
                           "ratio": round(ratio, 3), "regression": ratio > limit}
    total_ratio = current_baseline["total"]["p95_ms"] / previous["final_p95_ms"]
    return {"previous_run": previous["run_id"], "total_ratio": round(total_ratio, 3), "limit": round(limit, 3),
            "regression": total_ratio > limit or any(e["regression"] for e in endpoints.values()),
            "endpoints": endpoints}
