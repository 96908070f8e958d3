"""The run's machine-readable result (``--json PATH``) as types: the keys are DESIGN.md's contract.

``RunResult`` is what tasks.results.report.build_result returns, what the flows return and what
the store keeps in ``runs.result``. ``RunSections`` are the parts only some runs have, filled in
by the phase that measured them (the knob search, a reference workflow's reporting phases).
Nested records the toolkit only passes through (window stats, findings, decisions) stay plain
mappings; their shape is in DESIGN.md.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

STATUSES = ("goals_met", "budget_exhausted", "no_candidates", "failed")


class Costs(TypedDict):
    wall_s: float
    load_s: float
    cpu_s: float
    tokens: int
    usd: float


class LoadGeneratorSummary(TypedDict):
    processes: int  # Locust worker processes (the most any window used; 1: one process)
    cpu_max: float  # the busiest Locust process's highest window mean, % of one core
    saturated_windows: int  # windows the gate rejected for a saturated load generator


class ChangeEntry(TypedDict):
    kind: str  # a tasks.changes.CHANGE_KINDS name
    description: str
    status: str  # kept | reverted | failed
    reason: str | None
    params: dict[str, Any]
    effect: dict[str, Any] | None  # endpoint, metric, before, after, ratio, ci95
    patch: NotRequired[str]  # code_patch: the diff under .perfagents/patches/


class RunSections(TypedDict, total=False):
    search_history: dict[str, Any]  # comprehensive scope: configurations reused from earlier runs
    pareto: list[dict[str, Any]]  # comprehensive scope: the knob search's front
    search_points: list[dict[str, Any]]  # every configuration the search measured
    cost_tracking: dict[str, Any]  # ecommerce-optimization: cost per hour and per request, before/after
    drift: dict[str, Any]  # ecommerce-optimization: this run's start against earlier runs
    capacity: dict[str, Any]  # enterprise-api-optimization: the USL fit and the fleet it recommends
    phase_errors: list[str]  # reporting phases that failed (the result stands without them)
    llm: dict[str, Any]  # the advisor's calls, cache hits, tokens and USD (tasks.advisor.spend.Spend.summary)
    study_cpus: list[int]  # the CPUs this study held while others ran beside it (tasks/target/study_cpus.py)
    learning: dict[str, Any]  # estimated against measured per kind, over the store's history (tasks/results/learning.py)


class RunResult(RunSections):
    run_id: str
    target: str
    scope: str
    status: str  # one of STATUSES
    stop_reason: str | None
    baseline: dict[str, Any]  # window stats: {"endpoints": {name: {...}}, "total": {...}}
    final: dict[str, Any]  # the same shape, of the kept state
    findings: list[dict[str, Any]]
    changes: list[ChangeEntry]
    goals: list[dict[str, Any]]  # {"expr", "met", "value"}
    decisions: list[dict[str, Any]]  # per change: outcome, windows, looks
    costs: Costs
    noise_floor: dict[str, Any]  # "p95_rel" and how the baseline's floor was measured
    noise_kept_state: NotRequired[dict[str, Any]]  # the knob search's floor of the kept state
    config: dict[str, Any]  # the final knob values
    load_generator: LoadGeneratorSummary
    report_html: NotRequired[str]  # added when the reports are written
