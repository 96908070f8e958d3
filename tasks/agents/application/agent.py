"""The application agent: the target's processes (psutil), its CPU profile (py-spy), its code.

During the window ``profile`` samples the target's process tree with the shared
``ProcessTreeSampler`` and runs py-spy in short low-rate bursts (``pyspy.py``), alternating
CPU and wall-clock profiles. After the window it measures the spec's complexity probes
(``complexity.py``), outside the load so it does not disturb it. ``findings`` reports
``cpu_saturation``, ``memory_growth`` (``process.py``), ``hot_function``, ``blocking_call``
(``hotspots.py``), ``superlinear_complexity``, ``large_payload`` and
``uncompressed_response`` (``payload.py``), and stores the profiler's measured overhead in
``observed["profiler_overhead"]``. Each sub-probe fails alone: its error goes to
``observed["errors"]`` and the others carry on.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import httpx
import polars as pl
import psutil

from tasks.agents.application.complexity import complexity_findings, measure_probe
from tasks.agents.application.hotspots import find_blocking_calls, find_hot_functions, pool_loops
from tasks.agents.application.payload import find_payload_issues
from tasks.agents.application.process import (
    busy_processes,
    cpu_demand,
    cpu_seconds_by_pid,
    find_cpu_saturation,
    find_memory_growth,
    machine_cores,
    measured_part,
    sched_times,
    series_dict,
    series_frame,
)
from tasks.agents.application.pyspy import (
    BURST_S,
    BURST_START_S,
    GAP_S,
    MAX_FAILED_BURSTS,
    MIN_PERIOD_S,
    PYSPY_ENV,
    RATE_HZ,
    Burst,
    find_pyspy,
    measure_overhead,
    run_burst,
)
from tasks.agents.application.stacks import (
    CodeLocator,
    Stack,
    aggregate_functions,
    aggregate_loop_sites,
    parse_collapsed,
)
from tasks.agents.base import AgentContext
from tasks.findings import Finding
from tasks.resources import ProcessTreeSampler, empty_resources
from tasks.spec import ComplexityProbe, TargetSpec

__all__ = ["ApplicationAgent", "ComplexityProbe"]

SAMPLE_INTERVAL_S = 0.5
STOP_GRACE_S = 2.0  # how long profile() waits past window_s when ctx.stop never comes
COMPLEXITY_BUDGET_S = 12.0  # all complexity probes together, after the window
WAIT_FOR_WARMUP = True  # start the bursts once the load test's warm-up is over
MAX_POOLED_RUNS = 8  # runs whose loop profiles the agent keeps (one process may serve several runs)


class ApplicationAgent:
    """psutil series, py-spy bursts, complexity probes and payload checks of the target."""

    name = "application"
    layer = "application"

    def __init__(self, *, rate_hz: int = RATE_HZ, burst_s: int = BURST_S, gap_s: float = GAP_S,
                 wait_for_warmup: bool = WAIT_FOR_WARMUP, complexity_budget_s: float = COMPLEXITY_BUDGET_S) -> None:
        self.rate_hz, self.burst_s, self.gap_s = rate_hz, burst_s, gap_s
        self.wait_for_warmup = wait_for_warmup
        self.complexity_budget_s = complexity_budget_s
        self._loops: dict[str, list[dict[str, Any]]] = {}  # per run (its workdir): the windows' loop profiles

    def applies_to(self, spec: TargetSpec) -> bool:
        return spec.start is not None or bool(spec.base_url)

    # -- profile: during the window ----------------------------------------------------------
    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + ctx.window_s + STOP_GRACE_S
        errors: list[dict[str, str]] = []
        observed: dict[str, Any] = {"errors": errors, "profiler_settings": {
            "rate_hz": self.rate_hz, "burst_s": self.burst_s, "gap_s": self.gap_s, "nonblocking": True}}
        pids = _attempt(errors, "process", ctx.pids) or []
        if not pids:
            errors.append({"probe": "process", "error": "no target process visible: psutil and py-spy skipped"})
        roots = target_roots(ctx.spec, pids)
        observed["code_roots"] = [str(r) for r in roots]
        observed["cores"] = machine_cores(pids)
        cpu_before, t0 = cpu_seconds_by_pid(pids), time.monotonic()
        sampler = ProcessTreeSampler(ctx.pids, role="application", interval_s=SAMPLE_INTERVAL_S)
        sampling = bool(pids) and _attempt(errors, "psutil", sampler.start) is not None
        try:
            if self.wait_for_warmup and ctx.spec.load.warmup_s > 0:
                ctx.stop.wait(max(0.0, min(ctx.spec.load.warmup_s, deadline - time.monotonic() - 1)))
            sched_before, t_sched = sched_times(pids), time.monotonic()
            load_end = started + ctx.window_s
            bursts = (_attempt(errors, "pyspy", lambda: self.run_bursts(ctx, deadline, errors, load_end))
                      if pids else None) or []
            ctx.stop.wait(max(0.0, deadline - time.monotonic()))  # psutil goes on until the window ends
            pids_after = (_attempt(errors, "process", ctx.pids) or []) if pids else []
            observed["cpu_demand"] = cpu_demand(sched_before, sched_times(pids_after), time.monotonic() - t_sched)
        finally:
            frame = sampler.stop() if sampling else empty_resources()
        observed["bursts"] = [b.to_dict() for b in bursts]
        observed["resources"] = series_dict(frame)
        observed["busy_processes"] = busy_processes(cpu_before, cpu_seconds_by_pid(pids_after), time.monotonic() - t0)
        _attempt(errors, "stacks", lambda: observed.update(analyse_bursts(bursts, CodeLocator(roots))))
        observed["complexity"] = _attempt(errors, "complexity", lambda: self.measure_complexity(ctx, errors)) or []
        observed["elapsed_s"] = round(time.monotonic() - started, 3)
        return observed

    def run_bursts(self, ctx: AgentContext, deadline: float, errors: list[dict[str, str]],
                   load_end: float | None = None) -> list[Burst]:
        """Alternate CPU and wall-clock py-spy bursts until the window ends.

        The gap after the first burst shrinks (to ``MIN_PERIOD_S``, still a control period) when a
        full gap would leave no room for a whole wall-clock burst before the load ends: a short
        window then still gets one burst of each kind, which ``blocking_call`` needs.
        """
        pyspy = find_pyspy()
        if pyspy is None:
            errors.append({"probe": "pyspy", "error": f"py-spy not found (install it or set ${PYSPY_ENV})"})
            return []
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="pyspy-", dir=ctx.workdir))
        bursts: list[Burst] = []
        failures = 0
        while not ctx.stop.is_set() and deadline - time.monotonic() >= 1:
            pids = ctx.pids()
            if not pids:
                errors.append({"probe": "pyspy", "error": "the target's process is gone"})
                break
            duration = max(1, min(self.burst_s, int(deadline - time.monotonic())))
            burst = run_burst(pyspy, pids[0], folder / f"burst-{len(bursts):02d}.txt", rate_hz=self.rate_hz,
                              duration_s=duration, idle=len(bursts) % 2 == 1, stop=ctx.stop)
            bursts.append(burst)
            failures = failures + 1 if burst.error else 0
            if burst.error and all(e["error"] != burst.error for e in errors):
                errors.append({"probe": "pyspy", "error": burst.error})
            if failures >= MAX_FAILED_BURSTS:
                break
            ctx.stop.wait(max(0.0, min(self._gap(len(bursts), load_end), deadline - time.monotonic())))
        return bursts

    def _gap(self, done: int, load_end: float | None) -> float:
        if done != 1 or load_end is None:
            return self.gap_s
        room = load_end - time.monotonic() - self.burst_s - BURST_START_S
        return min(self.gap_s, max(MIN_PERIOD_S, room))

    def _run_loop(self, ctx: AgentContext, observed: dict[str, Any]) -> dict[str, Any]:
        """This window's loop profile pooled with the earlier windows' of the same run."""
        loops = self._loops.setdefault(str(ctx.workdir), [])
        if observed.get("loop"):
            loops.append(observed["loop"])
        while len(self._loops) > MAX_POOLED_RUNS:  # the agent outlives runs: forget the oldest
            del self._loops[next(iter(self._loops))]
        return pool_loops(loops)

    def measure_complexity(self, ctx: AgentContext, errors: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Each declared probe after the window, within ``complexity_budget_s`` for all of them."""
        probes = list(getattr(ctx.spec, "complexity", None) or [])
        results: list[dict[str, Any]] = []
        if not probes:
            return results
        deadline = time.monotonic() + self.complexity_budget_s
        with httpx.Client(base_url=ctx.base_url) as client:
            for i, raw in enumerate(probes):
                name = getattr(raw, "name", None) or (raw.get("name") if isinstance(raw, dict) else str(raw))
                share = (deadline - time.monotonic()) / (len(probes) - i)  # an equal share of what is left
                try:
                    probe = raw if isinstance(raw, ComplexityProbe) else ComplexityProbe.model_validate(
                        raw if isinstance(raw, dict) else raw.model_dump())
                    results.append(measure_probe(client, probe, time.monotonic() + share))
                except Exception as exc:  # noqa: BLE001 - one probe fails alone
                    errors.append({"probe": f"complexity:{name}", "error": f"{type(exc).__name__}: {exc}"})
        return results

    # -- findings: after the window ------------------------------------------------------------
    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
        errors: list[dict[str, str]] = observed.setdefault("errors", [])
        observed["cpu_pct_mean"] = _attempt(errors, "cpu", lambda: mean_cpu_pct(observed, samples))
        rate_hz = (observed.get("profiler_settings") or {}).get("rate_hz", self.rate_hz)
        observed["profiler_overhead"] = _attempt(errors, "overhead", lambda: measure_overhead(
            observed.get("bursts") or [], samples, rate_hz=rate_hz))
        out: list[Finding] = []
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("cpu_saturation", lambda: find_cpu_saturation(ctx.spec, ctx.config, observed, samples)),
            ("memory_growth", lambda: find_memory_growth(ctx.spec, observed, samples)),
            ("hot_function", lambda: find_hot_functions(observed)),
            ("blocking_call", lambda: find_blocking_calls({**observed, "loop": self._run_loop(ctx, observed)})),
            ("complexity", lambda: complexity_findings(observed.get("complexity") or [])),
            ("payload", lambda: self._payload(ctx, observed, samples, errors)),
        ]
        for name, step in steps:
            found = _attempt(errors, name, step)
            if isinstance(found, Finding):
                out.append(found)
            elif found:
                out.extend(found)
        return out

    def _payload(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame,
                 errors: list[dict[str, str]]) -> list[Finding]:
        found, probes = find_payload_issues(ctx.spec, ctx.config, ctx.base_url, samples, errors)
        observed["payload_probes"] = probes
        return found


def mean_cpu_pct(observed: dict[str, Any], samples: pl.DataFrame) -> float | None:
    """The tree's mean CPU (% of one core) over the measured part of the window."""
    cpu = measured_part(series_frame(observed.get("resources")), samples)["cpu_pct"].drop_nulls()
    return round(float(cast(float, cpu.mean())), 1) if cpu.len() else None


def analyse_bursts(bursts: list[Burst], locator: CodeLocator) -> dict[str, Any]:
    """Hot functions from the CPU bursts; event-loop sites from both kinds."""
    cpu: list[Stack] = []
    wall: list[Stack] = []
    for burst in bursts:
        path = Path(burst.path)
        if burst.exit_code == 0 and path.is_file():
            (wall if burst.idle else cpu).extend(parse_collapsed(path.read_text(errors="replace")))
    ok = [b for b in bursts if b.exit_code == 0]
    return {"cpu_profile": aggregate_functions(cpu, locator),
            "loop": {"cpu": aggregate_loop_sites(cpu, locator), "wall": aggregate_loop_sites(wall, locator),
                     "cpu_burst_s": round(sum(b.end - b.start for b in ok if not b.idle), 3),
                     "wall_burst_s": round(sum(b.end - b.start for b in ok if b.idle), 3)}}


def target_roots(spec: TargetSpec, pids: list[int]) -> list[Path]:
    """Folders holding the target's own code: its start cwd, its processes' cwd, the spec's folder."""
    roots: list[Path] = []
    if spec.start is not None:
        roots.append((spec.spec_dir / spec.start.cwd).resolve())
    for pid in pids:
        try:
            roots.append(Path(psutil.Process(pid).cwd()).resolve())
        except (psutil.Error, OSError):
            continue
    roots.append(Path(spec.spec_dir).resolve())
    return list(dict.fromkeys(roots))


def _attempt(errors: list[dict[str, str]], probe: str, fn: Callable[[], Any]) -> Any:
    """Run one sub-probe; record its failure instead of raising."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one failing probe must not take the others down
        errors.append({"probe": probe, "error": f"{type(exc).__name__}: {exc}"})
        return None
