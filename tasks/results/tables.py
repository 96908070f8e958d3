"""A result's tables as rows: before/after per endpoint, the Pareto front, the costs.

Shared by the markdown summary, the HTML report and the Prefect table artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (key in the result's costs, what the report calls it, its unit)
COSTS = (("wall_s", "wall clock", "s"), ("load_s", "load generated", "s"), ("cpu_s", "CPU of the target and the load generator", "s"),
         ("tokens", "LLM tokens", ""), ("usd", "LLM cost", "USD"))


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def before_after_rows(result: Mapping[str, Any], metric: str = "p95_ms") -> list[dict[str, Any]]:
    rows = []
    before, after = result["baseline"], result["final"]
    names = sorted(before.get("endpoints", {})) + ["total"]
    for name in names:
        b = before["total"] if name == "total" else before["endpoints"].get(name, {})
        a = after["total"] if name == "total" else after["endpoints"].get(name, {})
        if not b or not a:
            continue
        ratio = (a[metric] / b[metric]) if b.get(metric) else None
        rows.append({"endpoint": name, "before_p95_ms": b.get(metric), "after_p95_ms": a.get(metric),
                     "ratio": round(ratio, 3) if ratio is not None else None,
                     "before_rps": b.get("rps"), "after_rps": a.get("rps"),
                     "before_error_rate": b.get("error_rate"), "after_error_rate": a.get("error_rate")})
    return rows


def pareto_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Pareto front as table rows (Prefect table artifact, markdown)."""
    return [{**p["config"], **p["objectives"], "chosen": bool(p.get("chosen"))} for p in result.get("pareto") or []]


def cost_rows(result: Mapping[str, Any]) -> list[dict[str, str]]:
    """What the run spent, one row per cost: ``cost``, ``value`` (with its unit) and ``note``."""
    costs = result.get("costs") or {}
    rows = []
    for key, name, unit in COSTS:
        value = costs.get(key)
        if value is None:
            continue
        text = f"{value:.6f}".rstrip("0").rstrip(".") if key == "usd" else fmt(value)
        note = f"{int(value) // 60} min {value % 60:.0f} s" if key == "wall_s" and value >= 60 else ""
        rows.append({"cost": name, "value": f"{text} {unit}".strip(), "note": note})
    if llm := result.get("llm"):
        kept = sum(1 for c in result.get("changes") or [] if c.get("kind") == "code_patch" and c.get("status") == "kept")
        rows.append({"cost": "LLM calls", "value": str(llm.get("calls", 0)),
                     "note": f"{llm.get('cache_hits', 0)} cache hit(s); tokens {llm.get('tokens_in', 0)} in, "
                             f"{llm.get('tokens_out', 0)} out; USD per kept patch "
                             + (f"{llm.get('usd', 0) / kept:.6f}" if kept else "- (none kept)")})
    if tracking := result.get("cost_tracking"):
        for when in ("baseline", "final"):
            point = tracking.get(when) or {}
            if point.get("usd_per_million_requests") is not None:
                rows.append({"cost": f"serving cost, {'before' if when == 'baseline' else 'after'}",
                             "value": f"{fmt(point['usd_per_million_requests'])} USD per million requests",
                             "note": f"{point.get('workers')} worker(s) at {fmt(point.get('usd_per_hour'))} USD/h, "
                                     f"{fmt(point.get('rps'))} rps"})
    return rows
