"""One optimization run: the live state of the loop, opened from a resolved Request."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.advisor.candidates import open_advisor
from tasks.agents.registry import agents_for, capture_env_for
from tasks.analysis.gate import preload
from tasks.budget import Ledger
from tasks.changes.journal import refuse_open_changes
from tasks.changes.runtime import Runtime
from tasks.correctness import ResponseCheck
from tasks.db.redact import redact
from tasks.errors import InputError
from tasks.findings import Finding
from tasks.request import Request
from tasks.result import RunSections
from tasks.spec import TargetSpec
from tasks.store import Store, now
from tasks.target import attach_target, database_url, run_setup, start_target, stop_target
from tasks.target.study_cpus import claim_study_cpus
from tasks.window import Window

REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


@dataclass
class Noise:
    """The run's noise floor, and the agent-free (A/A) windows trials compare against."""

    p95_rel: float = 0.0  # the baseline's p95 floor: decisions, drift, the result's noise_floor.p95_rel
    measured: dict[str, Any] = field(default_factory=dict)  # how it was measured (the rest of noise_floor)
    baseline_aa: list[Window] = field(default_factory=list)  # the baseline's valid A/A windows
    kept_aa: list[Window] = field(default_factory=list)  # the kept state's agent-free windows (tasks/trial.py)
    kept_state: dict[str, Any] | None = None  # the knob search's own floor of the kept state (tasks/refine.py)

    def floor(self) -> dict[str, Any]:
        """The result's ``noise_floor``."""
        return {**{k: v for k, v in self.measured.items() if k != "p95_rel"}, "p95_rel": round(self.p95_rel, 4)}


@dataclass
class Run:
    run_id: str
    flow: str
    request: Request
    store: Store
    ledger: Ledger
    rt: Runtime
    agents: list[Any]
    baseline: Window | None = None
    current: Window | None = None
    noise: Noise = field(default_factory=Noise)
    profiled_seq: int = -1  # the change count when the last profiling window ran
    decisions: list[dict[str, Any]] = field(default_factory=list)  # per change: outcome, windows, looks
    findings: list[Finding] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # journal rows of this run, as reported
    tried: set[str] = field(default_factory=set)
    restored: list[dict[str, Any]] = field(default_factory=list)  # kept changes re-applied at start
    sections: RunSections = field(default_factory=lambda: RunSections())  # result parts only some runs have
    responses: ResponseCheck | None = None  # when quality asks responses==baseline
    advisor: Any = None  # tasks.advisor.candidates.Advisor when the spec has llm: and code.allow_changes
    page_loads: dict[str, Any] = field(default_factory=dict)  # "baseline" / "current": frames (tasks/pages.py)
    calibration: Any = None  # tasks.search.calibration.Calibration: the history's, fitted at the first ranking
    status: str | None = None
    stop_reason: str | None = None
    seq: int = 0

    @property
    def spec(self) -> TargetSpec:
        return self.request.spec


@contextmanager
def open_run(request: Request, *, flow: str = "optimize-target", keep_workdir: bool = False) -> Iterator[Run]:
    """Claim the study's CPUs when several studies share the host (tasks/target/study_cpus.py), open
    the request's store, record the run, set up and start (or attach to) the target; always clean up."""
    with claim_study_cpus() as cpus:
        with _open_run(request, flow, keep_workdir) as run:
            if cpus is not None:
                run.sections["study_cpus"] = sorted(cpus)
            yield run


@contextmanager
def _open_run(request: Request, flow: str, keep_workdir: bool) -> Iterator[Run]:
    spec = request.spec
    preload()  # a deployment's run: the gate's import overlaps the target's start
    store = Store(request.store)
    try:
        refuse_open_changes(store, spec.name, request.store)
    except InputError:
        store.close()
        raise
    run_id = f"{now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    workdir = (store.path.parent / "work" / run_id).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    store.insert_run(run_id, target=spec.name, scope=request.scope, flow=flow,
                     spec=redact(spec.model_dump(mode="json")),  # passwords never reach the store
                     goals=[g.text for g in request.goals], quality=[q.text for q in request.quality],
                     budget=request.budget.model_dump(), code_version=code_version())
    rt: Runtime | None = None
    try:
        agents = agents_for(spec)
        extra_env = capture_env_for(agents, workdir)
        kept = store.kept_state(spec.name) if request.start_from_kept else None
        config = {**spec.default_config(), **(kept["config"] if kept else {})}
        config = {k: v for k, v in config.items() if k in spec.knobs}
        if spec.start is not None:
            run_setup(spec, workdir)
            handle = start_target(spec, workdir, config, extra_env=extra_env)
        else:
            handle = attach_target(spec)
        rt = Runtime(spec, workdir, handle, config, database_url(spec, workdir, handle.port), extra_env)
        ledger = Ledger(request.budget)
        yield Run(run_id, flow, request, store, ledger, rt, agents, restored=kept["kept_changes"] if kept else [],
                  advisor=open_advisor(spec, store, ledger))
    finally:
        if rt is not None and rt.handle.process is not None:
            stop_target(rt.handle)  # the live handle: a knob change may have restarted the target
        store.close()
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
