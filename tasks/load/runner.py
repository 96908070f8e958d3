"""Run one Locust window as bounded subprocesses and return its request samples.

Locust monkey-patches with gevent, so it never runs in this process: we start
``<venv>/bin/locust --headless -f user.py,perfagents_listener.py[,shape.py]`` in its own
process group, pinned to a CPU when asked, with a hard timeout; with ``processes`` N > 1, a
master and N workers (tasks/load/distributed.py), every worker's samples merged into one
window whose count must equal the master's total. The listener writes every
request; samples before ``measure_start`` (test start + warm-up) are the warm-up and are
dropped; the measured part ends ``duration_s`` later, and the run goes on for ``TAIL_S``
more so the last measured requests can finish instead of being cut off by the stop. The
listener quits Locust at that moment to the fraction of a second (``--run-time`` takes whole
seconds: a 4.5 s plan ran 5, and a short window's every second counts).
Exit code 1 only means "some requests failed"; a locustfile that fails to import, or
Locust exiting before the test started, is a LoadTestError with Locust's own last words.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl

from tasks.errors import InputError, LoadTestError, SpecError
from tasks.load.distributed import (  # noqa: F401 - SAMPLES_ENV re-exported: the listener's contract
    META_SUFFIX,
    SAMPLES_ENV,
    merge_workers,
    plan_members,
    read_meta,
    worker_samples_path,
)
from tasks.load.processes import SAMPLER_INTERVAL_S, run_processes
from tasks.load.samples import empty_samples, read_samples
from tasks.load.scenario import SCENARIO_FILENAME, write_scenario
from tasks.load.steady import MAX_WARMUP_SHARE, SteadyState, steady_start
from tasks.spec import TargetSpec, check_loopback

LISTENER_SOURCE = Path(__file__).with_name("listener.py")
LISTENER_FILENAME = "perfagents_listener.py"  # a distinct module name inside Locust
RUN_ENV = "PERFAGENTS_RUN_S"  # same name as in listener.py (never imported here: it imports Locust)
TAIL_S = 0.5  # extra run time after the measured part, so in-flight requests complete
TIMEOUT_MARGIN_S = 45.0  # Locust start-up and shutdown on a busy 2-core machine
TIMEOUT_FACTOR = 1.25
SHAPE_TIMEOUT_S = 900.0  # a shape run with neither duration_s nor timeout_s
LOCUST_LOGLEVEL = "INFO"
STDERR_TAIL_LINES = 20
TAIL_BYTES = 64 * 1024
OK_EXIT_CODES = (0, 1)  # 1: some requests failed (--exit-code-on-error)
_UNSAFE_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class LoadResult:
    samples: pl.DataFrame  # SAMPLE_SCHEMA, warm-up excluded: measure_start <= ts < measure_end
    warmup_requests: int
    started_at: float  # epoch s: Locust's test_start
    measure_start: float
    ended_at: float  # end of the measured part
    duration_s: float  # ended_at - measure_start
    loadgen_cpu_pct: float  # the busiest Locust process's mean over the measured part, % of one core (nan: no reading)
    loadgen_cpu_max: float  # the highest reading of any Locust process
    loadgen_resources: pl.DataFrame  # RESOURCE_SCHEMA, the whole run: role "loadgen", or "loadgen-master", "loadgen-1" ...
    locust_exit_code: int
    stderr_tail: str
    tail_requests: int = 0  # started after the measured part (in the TAIL_S run-out)
    command: list[str] = field(default_factory=list)
    csv_prefix: Path | None = None  # Locust's own --csv output (its stats miss the last second)
    samples_path: Path | None = None  # the listener's CSV: every request, warm-up and tail included
    locust_requests: int | None = None  # Locust's own final count, warm-up and tail included
    locust_failures: int | None = None
    user_errors: int = 0  # exceptions that escaped the locustfile's tasks (not failed requests)
    steady: SteadyState | None = None  # the detected warm-up, when asked for
    processes: int = 1  # Locust worker processes (1: one process, no master)
    loadgen_cpu_by_role: dict[str, float] = field(default_factory=dict)  # each process's mean over the measured part

    @property
    def recorded_requests(self) -> int:
        """Every sample recorded, warm-up and tail included (Locust's total should say the same)."""
        return self.warmup_requests + self.requests + self.tail_requests

    @property
    def count_mismatch(self) -> str | None:
        """Why the merged samples cannot be trusted: a request lost or counted twice (workers only)."""
        if self.processes > 1 and self.locust_requests is not None and self.locust_requests != self.recorded_requests:
            return (f"merged samples {self.recorded_requests} != Locust's total {self.locust_requests} "
                    f"({self.processes} workers)")
        return None

    @property
    def requests(self) -> int:
        return self.samples.height

    @property
    def rps(self) -> float:
        return self.samples.height / self.duration_s if self.duration_s > 0 else 0.0


def locust_executable() -> Path:
    """The ``locust`` script of the running interpreter's environment."""
    candidate = Path(sys.executable).parent / "locust"
    if candidate.is_file():
        return candidate
    found = shutil.which("locust")
    if found is None:
        raise LoadTestError(f"locust is not installed next to {sys.executable} nor on PATH")
    return Path(found)


def run_load_test(
    spec: TargetSpec,
    base_url: str,
    workdir: Path,
    *,
    users: int | None = None,
    spawn_rate: float | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    label: str = "window",
    timeout_s: float | None = None,
    shape_file: Path | None = None,
    cpu: int | None = None,
    extra_env: dict[str, str] | None = None,
    allow_remote: bool = False,
    detect_warmup: bool = False,
    processes: int | None = None,
    cpus: Sequence[int] | None = None,
) -> LoadResult:
    """Drive ``base_url`` with the spec's scenario for warm-up + duration; return the samples.

    With ``shape_file`` (a LoadTestShape) the shape decides users and run time;
    ``duration_s`` then only sizes the timeout and ``warmup_s`` defaults to 0.
    With ``detect_warmup`` the measured part starts where the latency series is steady
    (tasks/load/steady.py), between the end of spawning and warm-up + 40 % of the duration,
    and ends where it would have (warm-up + duration after the start): ``warmup_s`` then only
    plans the run time. ``processes`` (default: the spec's ``load.processes``, 1 for ``auto``)
    Locust workers; ``cpus`` pins them round-robin (``cpu``: all on one CPU).
    """
    check_loopback(base_url, allow_remote=allow_remote)
    try:
        _ = urlsplit(base_url).port  # raises on a non-numeric port
    except ValueError as exc:
        raise SpecError(f"base_url {base_url!r}: {exc}") from exc
    load = spec.load
    users = users if users is not None else load.users
    spawn_rate = spawn_rate if spawn_rate is not None else load.spawn_rate
    if shape_file is None:
        duration = duration_s if duration_s is not None else load.duration_s
        warmup = warmup_s if warmup_s is not None else load.warmup_s
        planned = warmup + duration + TAIL_S  # the listener quits then (RUN_ENV)
        whole_s = math.ceil(planned) + 1  # Locust's own bound, in whole seconds: a backstop
        run_time: int | None = whole_s
        planned_s: float | None = planned
        bound = timeout_s if timeout_s is not None else whole_s * TIMEOUT_FACTOR + TIMEOUT_MARGIN_S
    else:
        duration = None
        warmup = warmup_s if warmup_s is not None else 0.0
        run_time, planned_s = None, None
        bound = timeout_s if timeout_s is not None else (
            duration_s * TIMEOUT_FACTOR + TIMEOUT_MARGIN_S if duration_s is not None else SHAPE_TIMEOUT_S)
        if not shape_file.is_file():
            raise SpecError(f"load shape file not found: {shape_file}")
    if users < 1 or spawn_rate <= 0 or warmup < 0 or (duration is not None and duration <= 0):
        raise InputError(f"load window needs users>=1, spawn_rate>0, duration>0, warmup>=0 "
                         f"(got {users}, {spawn_rate}, {duration}, {warmup})")
    if processes is None:
        processes = load.processes if isinstance(load.processes, int) else 1
    if processes < 1:
        raise InputError(f"load window needs processes >= 1 (got {processes})")
    cpus = [cpu] if cpu is not None else list(cpus or [])
    if not set(cpus) <= os.sched_getaffinity(0):
        raise InputError(f"cannot pin locust to CPUs {sorted(cpus)}: allowed CPUs are {sorted(os.sched_getaffinity(0))}")

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stem = _UNSAFE_LABEL.sub("_", label) or "window"
    locustfiles, cwd = _locustfiles(spec, workdir, shape_file)
    samples_path = workdir / f"{stem}.samples.csv"
    csv_prefix = workdir / f"{stem}.locust"
    json_path = workdir / f"{stem}.locust.json"  # Locust appends ".json" to --json-file
    worker_paths = [worker_samples_path(workdir, stem, i) for i in range(1, processes + 1)] if processes > 1 else []
    for stale in (samples_path, json_path, *worker_paths):
        stale.unlink(missing_ok=True)
        Path(f"{stale}{META_SUFFIX}").unlink(missing_ok=True)

    locust = [str(locust_executable()), "-f", ",".join(str(p) for p in locustfiles), "--loglevel", LOCUST_LOGLEVEL]
    headless = ["--headless", "--host", base_url, "--only-summary", "--csv", str(csv_prefix),
                "--json-file", str(csv_prefix)]
    if run_time is not None:
        headless += ["--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{run_time}s"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_") and k != RUN_ENV}
    if planned_s is not None:
        env[RUN_ENV] = f"{planned_s:.3f}"
    env.update(extra_env or {})
    members = plan_members(locust, headless, env, stem=stem, workdir=workdir, processes=processes, cpus=cpus)
    command = members[0].command

    exit_code, resources = run_processes(members, cwd, bound)
    stderr_tail = _tail(members[0].err_path)
    if processes > 1:
        meta, all_samples = merge_workers(worker_paths, samples_path)
    else:
        meta, all_samples = read_meta(samples_path), read_samples(samples_path)
    if meta.get("test_start") is None:
        worker = f" (worker: {_last_words(_tail(members[1].err_path))})" if processes > 1 else ""
        raise LoadTestError(f"locust exited (code {exit_code}) before the test started: "
                            f"{_last_words(stderr_tail)}{worker}")
    if exit_code not in OK_EXIT_CODES:
        raise LoadTestError(f"locust failed (exit code {exit_code}): {_last_words(stderr_tail)}")

    user_errors = int(meta.get("user_errors") or 0)
    if int(meta.get("rows") or 0) == 0 and user_errors:
        raise LoadTestError(f"locust made no requests; its tasks raised {user_errors} times, first: "
                            f"{meta.get('first_user_error')}")

    started_at = float(meta["test_start"])
    stopped_at = float(meta.get("test_stop") or time.time())
    measure_start = started_at + warmup
    measure_end = min(stopped_at, measure_start + duration) if duration is not None else stopped_at
    if all_samples.height:
        all_samples = all_samples.sort("ts", maintain_order=True)
    steady = None
    if detect_warmup and duration is not None:
        spawned = started_at + min(users / spawn_rate, warmup + duration / 2)
        steady = steady_start(all_samples, test_start=started_at, end=measure_end, min_start=spawned,
                              max_start=started_at + warmup + MAX_WARMUP_SHARE * duration)
        measure_start = steady.start
    warm = all_samples.filter(pl.col("ts") < measure_start).height
    tail = all_samples.filter(pl.col("ts") >= measure_end).height
    samples = all_samples.filter((pl.col("ts") >= measure_start) & (pl.col("ts") < measure_end))
    by_role, cpu_max = _cpu_by_role(resources, measure_start, measure_end)
    cpu_mean = max(by_role.values()) if by_role else math.nan
    locust_requests, locust_failures = _locust_totals(json_path)
    return LoadResult(
        samples=samples if samples.height else empty_samples(),
        warmup_requests=warm,
        started_at=started_at,
        measure_start=measure_start,
        ended_at=measure_end,
        duration_s=max(0.0, measure_end - measure_start),
        loadgen_cpu_pct=cpu_mean,
        loadgen_cpu_max=cpu_max,
        loadgen_resources=resources,
        locust_exit_code=exit_code,
        stderr_tail=stderr_tail,
        tail_requests=tail,
        command=command,
        csv_prefix=csv_prefix,
        samples_path=samples_path,
        locust_requests=locust_requests,
        locust_failures=locust_failures,
        user_errors=user_errors,
        steady=steady,
        processes=processes,
        loadgen_cpu_by_role=by_role,
    )


def _locustfiles(spec: TargetSpec, workdir: Path, shape_file: Path | None) -> tuple[list[Path], Path]:
    user_file = spec.locustfile_path()
    if user_file is not None:
        if not user_file.is_file():
            raise SpecError(f"load.locustfile not found: {user_file}")
        cwd = user_file.parent  # run the user's file as the user would, from its folder
    else:
        user_file = write_scenario(spec.load.endpoints, workdir / SCENARIO_FILENAME, spec.load.think_time_s)
        cwd = workdir
    listener = workdir / LISTENER_FILENAME
    shutil.copyfile(LISTENER_SOURCE, listener)
    files = [user_file, listener]
    if shape_file is not None:
        files.append(Path(shape_file).resolve())
    return files, cwd


def _locust_totals(json_path: Path) -> tuple[int | None, int | None]:
    """Total requests and failures from Locust's final ``--json-file`` (None if absent)."""
    try:
        entries = json.loads(json_path.read_text())
        return (sum(int(e["num_requests"]) for e in entries), sum(int(e["num_failures"]) for e in entries))
    except (OSError, ValueError, TypeError, KeyError):
        return None, None


def _tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    """The last lines of a file that may be large (a traceback per failing task)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


_LOG_PREFIX = re.compile(r"^\[[^\]]*\] \S+/[A-Z]+/[\w.]+: ")  # "[time] host/ERROR/locust.main: "
_LOG_NOISE = re.compile(r"Shutting down \(exit code|Starting Locust|Run time limit|Ramping to|All users spawned")


def _last_words(stderr_tail: str) -> str:
    """The most telling single line of Locust's stderr (the exception line of a traceback)."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in stderr_tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if ("Error" in line or "Exception" in line or "error" in line) and not _LOG_NOISE.search(line):
            return line
    useful = [line for line in lines if not _LOG_NOISE.search(line)]
    return (useful or lines or ["no output on stderr"])[-1]


def _cpu_by_role(resources: pl.DataFrame, start: float, end: float) -> tuple[dict[str, float], float]:
    """Each Locust process's mean CPU over the sampler rows covering (start, end] (all rows of a
    process with none there), and the highest of those rows."""
    means, peak = {}, math.nan
    for (role,), part in resources.group_by("role"):
        window = part.filter((pl.col("ts") > start) & (pl.col("ts") <= end + SAMPLER_INTERVAL_S))
        cpu = (window if window.height else part)["cpu_pct"].drop_nulls()
        if cpu.len():
            means[str(role)] = float(cpu.mean())  # type: ignore[arg-type]
            peak = max(float(cpu.max()), peak) if math.isfinite(peak) else float(cpu.max())  # type: ignore[arg-type]
    return means, peak
