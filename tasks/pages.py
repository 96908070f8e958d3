"""The page loads of a run's states, for Web Vitals goals and quality thresholds.

The baseline's and the kept state's page loads come from the frontend agent's profiling
windows; a change under trial that the request metrics would keep has its pages loaded once
more (on the idle target, as the agent does) when a quality threshold names a vital, so that
``lcp_ms<=1.1*baseline`` can revert it (tasks/decisions/vitals.py judges).
"""

from __future__ import annotations

import polars as pl

from tasks.agents.base import AgentContext
from tasks.agents.frontend.agent import find_chromium, load_pages_now
from tasks.decisions.vitals import broken_vitals, is_vital, page_loads
from tasks.run import Run
from tasks.window import Window


def window_page_loads(window: Window) -> pl.DataFrame | None:
    """The frontend agent's successful page loads in a profiling window (None without any)."""
    for outcome in window.agents:
        if outcome.agent == "frontend" and outcome.status == "ok":
            loads = page_loads(outcome.observed)
            return loads if loads.height else None
    return None


def note_profiled(run: Run, window: Window) -> None:
    """A profiling window's page loads are the current state's (and the baseline's, before it)."""
    loads = window_page_loads(window)
    if loads is None:
        return
    run.page_loads["current"] = loads
    if run.baseline is None:
        run.page_loads["baseline"] = loads


def wants_vitals(run: Run) -> bool:
    return any(is_vital(q) for q in run.request.quality) and bool(run.spec.frontend and run.spec.frontend.pages)


def measure_page_loads(run: Run) -> pl.DataFrame | None:
    """Load the spec's pages now, on the idle target (None without Chromium or pages)."""
    chromium = find_chromium()
    if not run.spec.frontend or not run.spec.frontend.pages or chromium is None:
        return None
    ctx = AgentContext(spec=run.spec, base_url=run.rt.handle.base_url, workdir=run.rt.workdir, window_s=0.0,
                       database_url=run.rt.database_url, pids=run.rt.handle.pids, config=dict(run.rt.config))
    loads = page_loads(load_pages_now(ctx, chromium, lighthouse=False))
    return loads if loads.height else None


def broken_page_vitals(run: Run) -> tuple[list[str], pl.DataFrame | None]:
    """(broken vital thresholds, the page loads measured) for the state now on the target."""
    if not wants_vitals(run) or "baseline" not in run.page_loads:
        return [], None
    loads = measure_page_loads(run)
    return broken_vitals(run.request.quality, loads, run.page_loads["baseline"]), loads
