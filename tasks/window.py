"""One measurement window: load (+ agents, in a profiling window), the gate, one store transaction.

The measured part starts where the latency series is steady (tasks/load/steady.py); the warm-up
found is stored in ``windows.warmup_s``. The CPU that processes outside the toolkit's tree used
meanwhile is measured (the gate's ``machine_quiet`` validation stores it); the gate rejects a
window disturbed by it. Where the spec or the machine asks for it, the target and everything
else run on disjoint CPUs during the load (tasks/target/pinning.py).
A window the gate rejects is measured again (bounded by MAX_ATTEMPTS and the budget) and is
never used for a decision. While the load runs, its progress so far goes to the store's
``live_windows`` every few seconds (tasks/live.py), for the dashboard.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tasks import progress
from tasks.agents.base import Agent, AgentContext
from tasks.agents.database.sqlcapture import set_capture, sql_log_dir
from tasks.analysis.gate import ERROR_RULE, LOADGEN_RULE, validate_window, wait_preloaded
from tasks.analysis.stats import endpoint_stats_frame, window_stats
from tasks.budget import Ledger
from tasks.changes.runtime import Runtime
from tasks.findings import Finding
from tasks.live import LiveWindow
from tasks.load.runner import run_load_test
from tasks.resources import ForeignCpuMeter, ProcessTreeSampler
from tasks.store import Store, now
from tasks.target.pinning import pin_mode, pinned, plan_cpus
from tasks.target.process import database_pids
from tasks.target.study_cpus import held_study_cpus
from tasks.tracing.spans import SPANS_KEY, spans_frame

MAX_ATTEMPTS = 2
AGENT_GRACE_S = 30.0  # time an agent may take after the load stops (analysis)


@dataclass
class AgentOutcome:
    agent: str
    status: str  # ok | failed | timeout | skipped
    observed: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0


@dataclass
class Window:
    window_id: str
    label: str
    config: dict[str, Any]
    samples: pl.DataFrame
    stats: dict[str, Any]
    duration_s: float
    valid: bool
    reasons: list[str]
    loadgen_cpu_pct: float
    findings: list[Finding] = field(default_factory=list)
    agents: list[AgentOutcome] = field(default_factory=list)
    attempt: int = 1
    failed_rules: list[str] = field(default_factory=list)  # gate expectations that failed
    warmup_s: float = 0.0  # the warm-up detected before the measured part
    foreign_cores: float = 0.0  # cores used by outside processes during the window
    users: int = 0

    @property
    def errors_only(self) -> bool:
        """Rejected only for its error rate: a property of the configuration, not a bad measurement."""
        return not self.valid and self.failed_rules == [ERROR_RULE]


def _start_agent(agent: Agent, ctx: AgentContext) -> Future[dict[str, Any]]:
    """The agent's profile() on a daemon thread: one that hangs past its grace is abandoned and
    cannot hold the process open at exit (a ThreadPoolExecutor's workers are joined at exit)."""
    future: Future[dict[str, Any]] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(agent.profile(ctx))
        except BaseException as exc:  # noqa: BLE001 - handed to _collect, which records it
            future.set_exception(exc)

    threading.Thread(target=work, name=f"agent-{agent.name}", daemon=True).start()
    return future


def _collect(futures: dict[str, Any], started: float, deadline: float) -> dict[str, AgentOutcome]:
    out = {}
    for name, fut in futures.items():
        try:
            observed = fut.result(timeout=max(0.0, deadline - time.monotonic()))
            status = "skipped" if isinstance(observed, dict) and observed.get("skipped") else "ok"
            out[name] = AgentOutcome(name, status, observed or {}, duration_s=time.monotonic() - started)
        except FutureTimeout:
            out[name] = AgentOutcome(name, "timeout", error=f"no result within {deadline - started:.0f} s",
                                     duration_s=time.monotonic() - started)
        except Exception as exc:  # an agent never fails the run (DESIGN principle 3)
            out[name] = AgentOutcome(name, "failed", error=f"{type(exc).__name__}: {exc}",
                                     observed={"traceback": traceback.format_exc(limit=5)},
                                     duration_s=time.monotonic() - started)
    return out


def _findings(agents: list[Agent], outcomes: dict[str, AgentOutcome], ctx: AgentContext, samples: pl.DataFrame) -> list[Finding]:
    found: list[Finding] = []
    ctx.peers = {name: outcome.observed for name, outcome in outcomes.items() if outcome.status == "ok"}
    for agent in agents:
        outcome = outcomes[agent.name]
        if outcome.status != "ok":
            continue
        try:
            found.extend(agent.findings(ctx, outcome.observed, samples))
        except Exception as exc:
            outcome.status, outcome.error = "failed", f"findings: {type(exc).__name__}: {exc}"
    return found


def measure_window(
    store: Store, run_id: str, rt: Runtime, label: str, *, agents: list[Agent], ledger: Ledger,
    max_error_rate: float | None = None, change_id: str | None = None, max_attempts: int = MAX_ATTEMPTS,
    allow_remote: bool = False, warmup_s: float | None = None, detect_warmup: bool = True,
    duration_s: float | None = None,
) -> Window:
    """Measure until the gate accepts a window, or attempts/budget run out (then invalid).

    ``warmup_s`` plans a longer warm-up than the spec's (after a change that left cold state);
    where the steady state starts is detected either way.
    """
    spec = rt.spec
    warmup_s = spec.load.warmup_s if warmup_s is None else warmup_s
    duration_s = spec.load.duration_s if duration_s is None else duration_s  # a profiling window's may be longer
    planned_s = duration_s + warmup_s
    window: Window | None = None
    for attempt in range(1, max_attempts + 1):
        if attempt > 1 and ledger.exhausted_by(next_load_s=planned_s, next_iteration=False):
            break
        window = _measure_once(store, run_id, rt, label, agents, ledger, max_error_rate, change_id, attempt,
                               allow_remote, warmup_s, detect_warmup, duration_s)
        if window.valid or window.errors_only:  # measuring errors again would show them again
            break
    assert window is not None
    return window


def _measure_once(
    store: Store, run_id: str, rt: Runtime, label: str, agents: list[Agent], ledger: Ledger,
    max_error_rate: float | None, change_id: str | None, attempt: int, allow_remote: bool, warmup_s: float,
    detect_warmup: bool, duration_s: float,
) -> Window:
    spec = rt.spec
    window_id = uuid.uuid4().hex[:12]
    workdir = rt.workdir / f"{label}-{attempt}"
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = AgentContext(spec=spec, base_url=rt.handle.base_url, workdir=rt.workdir,
                       window_s=duration_s + warmup_s,
                       database_url=rt.database_url, pids=rt.handle.pids, config=dict(rt.config))
    # the target's SQL capture records only while the database agent profiles: windows that
    # decide carry no capture cost
    set_capture(sql_log_dir(rt.workdir), on=any(a.name == "database" for a in agents))
    sampler = ProcessTreeSampler(rt.handle.pids, role="target")
    wait_preloaded()  # the gate's suites are built off the window, not during it
    progress.emit("window_start", label=label, attempt=attempt, seconds=ctx.window_s, config=dict(rt.config))
    started_at = now()
    t0 = time.monotonic()
    futures = {agent.name: _start_agent(agent, ctx) for agent in agents}
    sampler.start()
    meter = ForeignCpuMeter(lambda: [*rt.handle.pids(), *database_pids(rt.database_url),
                                     *database_pids(os.environ.get("PREFECT_API_URL"), 4200)],
                            cpus=held_study_cpus()).start()
    try:
        with LiveWindow(store, run_id, label, attempt, workdir, planned_s=ctx.window_s, warmup_s=warmup_s), \
                pinned(plan_cpus(pin_mode(spec)), rt.handle.pids):
            result = run_load_test(spec, rt.handle.base_url, workdir, label=label, allow_remote=allow_remote,
                                   warmup_s=warmup_s, duration_s=duration_s, detect_warmup=detect_warmup,
                                   processes=rt.load_generator.processes)
    finally:
        foreign = meter.stop()
        sampler.stop()
        ctx.stop.set()  # the agents' cue to finish; one that overruns its grace is abandoned
    outcomes = _collect(futures, t0, time.monotonic() + AGENT_GRACE_S)
    ledger.load_s += result.duration_s + (result.measure_start - result.started_at)
    samples = result.samples
    gate = validate_window(samples, window_start=result.measure_start, window_end=result.ended_at,
                           loadgen_cpu_pct=result.loadgen_cpu_pct, max_error_rate=max_error_rate,
                           foreign_cores=foreign)
    if result.count_mismatch:  # a request lost or counted twice between workers: not a measurement
        gate.valid, gate.reasons = False, [*gate.reasons, result.count_mismatch]
    rt.load_generator.record(result.processes, result.loadgen_cpu_pct,
                             saturated=any(r["expectation"] == LOADGEN_RULE and not r["success"] for r in gate.rows))
    stats = window_stats(samples, result.duration_s)
    findings = _findings([a for a in agents if a.name in outcomes], outcomes, ctx, samples) if gate.valid else []
    resources = pl.concat([sampler.frame(), result.loadgen_resources], how="diagonal_relaxed")
    ledger.cpu_s += _cpu_seconds(resources)
    window = Window(window_id, label, dict(rt.config), samples, stats, result.duration_s, gate.valid,
                    gate.reasons, result.loadgen_cpu_pct, findings, list(outcomes.values()), attempt,
                    [row["expectation"] for row in gate.rows if not row["success"]],
                    round(result.measure_start - result.started_at, 2), foreign, spec.load.users)
    progress.emit("window_end", label=label, valid=gate.valid, reasons=gate.reasons, total=stats["total"],
                  warmup_s=window.warmup_s, foreign_cores=foreign)
    save_window(store, run_id, window, started_at, change_id, spec.load.users, window.warmup_s, gate.rows, resources)
    return window


def _cpu_seconds(resources: pl.DataFrame) -> float:
    """CPU time of target + load generator over the window, from the psutil series."""
    if resources.height == 0 or "cpu_pct" not in resources.columns:
        return 0.0
    total = 0.0
    for _, part in resources.sort("ts").group_by("role"):
        ts, cpu = part["ts"].to_list(), part["cpu_pct"].fill_null(0).to_list()
        total += sum((ts[i] - ts[i - 1]) * cpu[i] / 100 for i in range(1, len(ts)))
    return total


def save_window(
    store: Store, run_id: str, w: Window, started_at: Any, change_id: str | None, users: int,
    warmup_s: float, validations: list[dict[str, Any]], resources: pl.DataFrame,
) -> None:
    """Everything one window produced, in one transaction."""
    with store.transaction():
        store.insert_window(w.window_id, run_id=run_id, label=w.label, attempt=w.attempt, config=w.config,
                            change_id=change_id, started_at=started_at, duration_s=w.duration_s,
                            warmup_s=warmup_s, users=users, loadgen_cpu_pct=w.loadgen_cpu_pct, valid=w.valid,
                            reason="; ".join(w.reasons) or None)
        store.insert_window_frame("samples", w.window_id, w.samples)
        store.insert_window_frame("endpoint_stats", w.window_id,
                                  endpoint_stats_frame(w.samples, w.duration_s, w.window_id))
        if resources.height:
            store.insert_window_frame("resources", w.window_id, resources)
        for row in validations:
            store.insert_validation(w.window_id, row["expectation"], row["success"], row.get("observed"))
        for a in w.agents:
            spans = a.observed.pop(SPANS_KEY, None)  # the tracing agent's span rows: a table of their own
            if spans:
                store.insert_window_frame("spans", w.window_id, spans_frame(spans, w.window_id))
            store.insert_agent_run(w.window_id, a.agent, a.status, a.error, a.duration_s, a.observed)
        for f in w.findings:
            store.insert_finding(run_id, w.window_id, f.to_dict())
