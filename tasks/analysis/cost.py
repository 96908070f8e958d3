"""Cost and performance tracking: what a configuration costs to run, per hour and per request."""

from __future__ import annotations

from typing import Any

from tasks.spec import TargetSpec

WORKER_KNOB_WORDS = ("worker",)


def workers_in(spec: TargetSpec, config: dict[str, Any]) -> int:
    for name in spec.knobs:
        if any(w in name.lower() for w in WORKER_KNOB_WORDS):
            return int(config.get(name, spec.knobs[name].default))
    return 1


def usd_per_hour(spec: TargetSpec, config: dict[str, Any]) -> float:
    if spec.cost is None:
        return 0.0
    return workers_in(spec, config) * spec.cost.usd_per_worker_hour + spec.cost.usd_per_instance_hour


def cost_tracking(spec: TargetSpec, baseline: dict[str, Any], final: dict[str, Any],
                  baseline_config: dict[str, Any], final_config: dict[str, Any]) -> dict[str, Any]:
    """USD per hour and per million requests (at the measured rps), before and after."""
    def side(stats: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        usd = usd_per_hour(spec, config)
        rps = stats["total"].get("rps") or 0.0
        per_million = usd / (rps * 3600) * 1e6 if rps > 0 else None
        return {"workers": workers_in(spec, config), "usd_per_hour": round(usd, 4), "rps": rps,
                "p95_ms": stats["total"].get("p95_ms"),
                "usd_per_million_requests": round(per_million, 4) if per_million is not None else None}

    return {"baseline": side(baseline, baseline_config), "final": side(final, final_config)}
