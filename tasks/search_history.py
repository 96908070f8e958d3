"""Memoization across runs: the search windows earlier runs of a target measured, as rows for
``KnobSearch.from_history`` (tasks/search.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.analysis.cost import usd_per_hour
from tasks.expressions import Expression
from tasks.search import (
    COST_OBJECTIVE,
    ERROR_EXPECTATION,
    RESPONSES_EXPECTATION,
    SEARCH_LABEL_PREFIX,
    quality_constraints,
)
from tasks.spec import TargetSpec


def history_rows(
    store: Any, spec: TargetSpec, code_version: str | None, quality: Iterable[Expression],
    baseline: Mapping[str, Any] | None, *, label_prefix: str = SEARCH_LABEL_PREFIX,
) -> list[dict[str, Any]]:
    """Rows for ``KnobSearch.from_history``: earlier search windows of this target and code version.

    A window counts when the gate accepted it, or rejected it only for its error rate (the
    configuration's own errors: measuring it again would show them again). Feasibility is
    re-checked against this run's quality thresholds and baseline; a window with a failed
    ``responses==baseline`` validations row is infeasible. Kept schema changes are not part
    of a window's config: use a label prefix per such state.
    """
    found = store.search_windows(spec.name, code_version, label_prefix,
                                 responses_expectation=RESPONSES_EXPECTATION, error_expectation=ERROR_EXPECTATION)
    windows: dict[str, dict[str, Any]] = {}
    for row in found:
        w = windows.setdefault(row["window_id"], {"config": json.loads(row["config"] or "{}"),
                                                   "stats": {"endpoints": {}, "total": {}},
                                                   "responses_ok": row["responses_ok"]})
        entry = {k: row[k] for k in ("requests", "rps", "p50_ms", "p95_ms", "p99_ms", "error_rate", "mean_ms")}
        if row["endpoint"] == "__total__":
            w["stats"]["total"] = entry
        else:
            w["stats"]["endpoints"][row["endpoint"]] = entry
    out = []
    for w in windows.values():
        objectives = {**w["stats"]["total"], COST_OBJECTIVE: usd_per_hour(spec, w["config"])}
        constraints = quality_constraints(quality, w["stats"], baseline, responses_ok=w["responses_ok"])
        out.append({"config": w["config"], "objectives": objectives, "constraints": constraints, "stats": w["stats"]})
    return out
