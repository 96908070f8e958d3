"""Each step of the closed loop as a Prefect task: thin wrappers over tasks/ functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks import loop
from tasks import trial as trial_steps
from tasks.errors import is_transient
from tasks.findings import Candidate
from tasks.results.report import before_after_rows, pareto_rows, render_markdown
from tasks.run import Run
from tasks.trial import Trial
from tasks.window import Window


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


STEP: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
# A window whose load test failed or whose target was not ready is measured again; nothing is
# stored or charged before a window ends (tasks/window.py), and bad input is never retried.
RETRY_TRANSIENT: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [5, 15],
                                   "retry_condition_fn": _retry_transient}


@task(name="measure-baseline", **RETRY_TRANSIENT, **STEP)
def measure_baseline(run: Run) -> Window:
    return loop.measure_baseline(run)


@task(name="measure-window", **RETRY_TRANSIENT, **STEP)
def measure_window(run: Run, label: str, change_id: str | None = None, cold: bool = False) -> Window:
    return loop.measure(run, label, change_id, cold=cold)


@task(name="profile-window", **RETRY_TRANSIENT, **STEP)
def profile_window(run: Run, label: str) -> Window | None:
    return loop.profile(run, label)


@task(name="switch-change", **STEP)
def switch_change(run: Run, trial: Trial, on: bool) -> bool:
    return trial_steps.switch(run, trial, on)


@task(name="rank-candidates", **STEP)
def next_candidate(run: Run) -> Candidate | None:
    return loop.next_candidate(run)


@task(name="apply-change", **STEP)
def apply_change(run: Run, candidate: Candidate) -> tuple[str, dict[str, Any]]:
    return loop.apply_change(run, candidate)


@task(name="keep-or-revert", **STEP)
def settle_change(run: Run, trial: Trial) -> dict[str, Any]:
    return loop.settle_change(run, trial)


@task(name="restore-kept-state", **STEP)
def restore_kept(run: Run, kept: list[dict[str, Any]]) -> None:
    loop.restore_kept(run, kept)


@task(name="publish-report", **STEP)
def publish_report(result: Mapping[str, Any]) -> None:
    """Prefect artifacts keyed by target: a markdown report, a before/after table and the Pareto front."""
    key = result["target"].replace("_", "-")
    create_markdown_artifact(markdown=render_markdown(result), key=f"{key}-report",
                             description=f"perfagents run {result['run_id']}")
    create_table_artifact(table=before_after_rows(result), key=f"{key}-before-after",
                          description=f"p95 and rps before/after, run {result['run_id']}")
    if rows := pareto_rows(result):
        create_table_artifact(table=rows, key=f"{key}-pareto",
                              description=f"Pareto front of the knob search, run {result['run_id']}")
