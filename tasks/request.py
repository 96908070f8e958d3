"""The user's request: the flows' one parameter (``RunRequest``), and what it resolves to (``Request``).

``RunRequest`` is what a user types: the CLI builds it from its flags, the Prefect UI renders it
as one form (every field JSON, every field with a default, so a run with no parameters runs the
flow's reference target). ``resolve_request`` turns it into a ``Request``: the spec loaded, the
expressions parsed, the budget checked, the flow's defaults filled in. CLI values override the
spec's goals, quality, budget and scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tasks.advisor.patch import require_clean_work_tree
from tasks.agents.registry import selected_agents
from tasks.budget import Budget, parse_budget
from tasks.errors import InputError
from tasks.expressions import Expression, parse_expressions
from tasks.spec import TargetSpec, first_error, load_spec
from tasks.store import DEFAULT_STORE

Scope = Literal["quick-win", "comprehensive"]
SCOPES: tuple[Scope, ...] = ("quick-win", "comprehensive")
REFERENCE_TARGET = "ecommerce"  # what optimize-target optimizes when no target is given


class RunRequest(BaseModel):
    """What to optimize, toward what, within what: every field optional (default: the spec's, or the flow's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = Field(default=None, description=(
        "a target spec file (relative to the repo root) or a reference workflow name: ecommerce, "
        "enterprise-api; default: the flow's reference target"))
    performance_goals: list[str] | None = Field(default=None, description=(
        'goals to reach, e.g. ["p95_ms<=200", "rps>=500"]; default: the spec\'s'))
    optimization_scope: Scope | None = Field(default=None, description=(
        "quick-win (profile, rank, apply the safe top changes) or comprehensive (also a knob search "
        "and a capacity model); default: the spec's"))
    budget_constraints: str | None = Field(default=None, description=(
        'hard limits, e.g. "minutes=15,iterations=8,tokens=50000"; default: the spec\'s'))
    quality_metrics: list[str] | None = Field(default=None, description=(
        'thresholds every kept change must hold, e.g. ["error_rate<=0.01", "p99_ms<=1.1*baseline"]; '
        "default: the spec's"))
    database_url: str | None = Field(default=None, description=(
        "a database URL replacing the spec's, e.g. postgresql://postgres@127.0.0.1:5432/api "
        "(a password, if any, from PGPASSWORD)"))
    allow_remote: bool = Field(default=False, description="allow load to a host other than loopback")
    start_from_kept: bool | None = Field(default=None, description=(
        "start from the last kept configuration stored for this target; default: the flow's "
        "(the reference workflows do, optimize-target does not)"))
    remeasure: bool = Field(default=False, description=(
        "measure search configurations again even if earlier runs of this target and code version "
        "measured them (comprehensive scope); by default they are reused"))
    store: str = Field(default=str(DEFAULT_STORE), description="the DuckDB store file")
    json_path: str | None = Field(default=None, description="where to write the machine-readable result")

    @field_validator("database_url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        from tasks.db.redact import url_password

        if value is not None and url_password(value) is not None:
            raise ValueError("a password in database_url would be stored with the flow run's parameters: "
                             "set PGPASSWORD for the worker instead")
        return value

    @field_validator("optimization_scope", mode="before")
    @classmethod
    def _known_scope(cls, value: Any) -> Any:
        if value is not None and value not in SCOPES:
            raise ValueError(f"unknown scope {value!r} (quick-win or comprehensive)")
        return value


def build_request(**fields: Any) -> RunRequest:
    """A RunRequest from the CLI's values; a bad one is one InputError line."""
    try:
        return RunRequest(**fields)
    except ValidationError as exc:
        raise InputError(first_error(exc)) from exc


@dataclass(frozen=True)
class Request:
    """A RunRequest resolved: the spec loaded and checked, expressions parsed, defaults filled in."""

    spec: TargetSpec
    goals: list[Expression]
    quality: list[Expression]
    budget: Budget
    scope: Scope
    allow_remote: bool = False
    remeasure: bool = False  # measure search configurations again even if history has them
    start_from_kept: bool = False
    store: Path = DEFAULT_STORE
    json_path: Path | None = None

    @property
    def max_error_rate(self) -> float:
        """The gate's error-rate ceiling: the quality threshold, or DEFAULT_MAX_ERROR_RATE."""
        limits = [q.value for q in self.quality if q.metric == "error_rate" and not q.relative and q.endpoint is None]
        return min(limits) if limits else DEFAULT_MAX_ERROR_RATE


# Without an error_rate quality threshold a window where half the requests fail still measures
# failures, not the target's speed: the gate rejects it (a change that causes it is reverted,
# a baseline that shows it ends the run with the reason).
DEFAULT_MAX_ERROR_RATE = 0.5


def resolve_request(
    params: RunRequest, *, target: str = REFERENCE_TARGET, start_from_kept: bool = False,
) -> Request:
    """Parse and check everything the user gave, before anything starts or is written.

    ``target`` and ``start_from_kept`` are the flow's defaults, for a request that leaves them out.
    """
    spec = load_spec(params.target or target, allow_remote=params.allow_remote, database_url=params.database_url)
    selected_agents()  # a bad PERFAGENTS_AGENTS is refused here, before a run exists
    if spec.llm is not None and spec.code is not None and spec.code.allow_changes:
        require_clean_work_tree((spec.spec_dir / spec.code.source_dir).resolve())  # patches must be reversible
    goals = params.performance_goals
    quality = params.quality_metrics
    return Request(
        spec=spec,
        goals=parse_expressions(goals if goals is not None else spec.performance_goals),
        quality=parse_expressions(quality if quality is not None else spec.quality_metrics),
        budget=parse_budget(params.budget_constraints) if params.budget_constraints is not None
        else spec.budget_constraints,
        scope=params.optimization_scope or spec.optimization_scope,
        allow_remote=params.allow_remote,
        remeasure=params.remeasure,
        start_from_kept=start_from_kept if params.start_from_kept is None else params.start_from_kept,
        store=Path(params.store),
        json_path=Path(params.json_path) if params.json_path else None,
    )
