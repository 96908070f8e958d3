"""Memoization across runs: the search windows earlier runs of a target measured, as rows for
``KnobSearch.from_history`` (tasks/search/knob_search.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tasks.analysis.cost import usd_per_hour
from tasks.analysis.gate import ERROR_RULE
from tasks.expressions import Expression
from tasks.search.choice import COST_OBJECTIVE, quality_constraints
from tasks.spec import TargetSpec

SEARCH_LABEL_PREFIX = "search-"  # windows the search measured (history_rows reads only these)
RESPONSES_EXPECTATION = "responses==baseline"  # a validations row the search writes after the check
ERROR_EXPECTATION = ERROR_RULE  # the gate rule whose failure alone still measures a configuration


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
