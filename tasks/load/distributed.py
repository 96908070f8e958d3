"""One window's Locust as a master and N workers on this host, their samples merged into one.

The master (``--master``, bound to 127.0.0.1 on a free port, ``--expect-workers N``) holds
the users, spawn rate and run time, and writes Locust's own totals (``--json-file``: the
workers' stats as they reported them). Each worker (``--worker``) makes requests and records
them in a samples file of its own (the listener, ``<stem>.samples.w<i>.csv`` and its
``.meta.json``). The window is the concatenation of the workers' samples sorted by start
time: a request is recorded only by the worker that made it, so none is counted twice, and
the merged count is checked against the master's total by the caller (a worker whose last
stats never reached the master, or a samples file cut short, shows as a mismatch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from tasks.load.processes import LocustProcess
from tasks.load.samples import empty_samples, read_samples
from tasks.target.process import free_port

SAMPLES_ENV = "PERFAGENTS_SAMPLES_PATH"  # same name as in listener.py
META_SUFFIX = ".meta.json"
EXPECT_WORKERS_WAIT_S = 60  # the master gives up (and the window fails) if its workers do not connect
MASTER_HOST = "127.0.0.1"


def plan_members(locust: list[str], headless: list[str], env: dict[str, str], *, stem: str, workdir: Path,
                 processes: int, cpus: Sequence[int] | None) -> list[LocustProcess]:
    """The leader first: one process (``processes == 1``), or a master then its workers.

    ``locust`` is ``[locust, -f, files, --loglevel, L]``; ``headless`` the options of the
    process that runs the test (host, users, run time, csv and json outputs). Workers are
    pinned round-robin over ``cpus``; the leader gets all of them.
    """
    every = frozenset(cpus) if cpus else None
    samples = workdir / f"{stem}.samples.csv"
    if processes == 1:
        return [LocustProcess("loadgen", [*locust, *headless], {**env, SAMPLES_ENV: str(samples)},
                              workdir / f"{stem}.locust.out", workdir / f"{stem}.locust.err", every)]
    port = free_port()
    master_env = {k: v for k, v in env.items() if k != SAMPLES_ENV}
    members = [LocustProcess(
        "loadgen-master",
        [*locust, *headless, "--master", "--master-bind-host", MASTER_HOST, "--master-bind-port", str(port),
         "--expect-workers", str(processes), "--expect-workers-max-wait", str(EXPECT_WORKERS_WAIT_S)],
        master_env, workdir / f"{stem}.locust.out", workdir / f"{stem}.locust.err", every)]
    for i in range(1, processes + 1):
        pinned = frozenset({cpus[(i - 1) % len(cpus)]}) if cpus else None
        members.append(LocustProcess(
            f"loadgen-{i}",
            [*locust, "--worker", "--master-host", MASTER_HOST, "--master-port", str(port)],
            {**env, SAMPLES_ENV: str(worker_samples_path(workdir, stem, i))},
            workdir / f"{stem}.locust.w{i}.out", workdir / f"{stem}.locust.w{i}.err", pinned))
    return members


def worker_samples_path(workdir: Path, stem: str, index: int) -> Path:
    return workdir / f"{stem}.samples.w{index}.csv"


def read_meta(samples_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(f"{samples_path}{META_SUFFIX}").read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def merge_workers(paths: list[Path], out: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    """The workers' metas as one (first start, last stop, rows and user errors summed) and their
    samples as one frame sorted by start time, also written to ``out`` (the window's samples file)."""
    metas = [read_meta(p) for p in paths]
    starts = [float(m["test_start"]) for m in metas if m.get("test_start") is not None]
    stops = [float(m["test_stop"]) for m in metas if m.get("test_stop") is not None]
    errors = [m["first_user_error"] for m in metas if m.get("first_user_error")]
    meta: dict[str, Any] = {
        "test_start": min(starts) if starts else None,
        "test_stop": max(stops) if stops else None,
        "rows": sum(int(m.get("rows") or 0) for m in metas),
        "user_errors": sum(int(m.get("user_errors") or 0) for m in metas),
        "first_user_error": errors[0] if errors else None,
        "workers_started": len(starts),
    }
    frames = [f for f in (read_samples(p) for p in paths) if f.height]
    merged = pl.concat(frames).sort("ts", maintain_order=True) if frames else empty_samples()
    merged.write_csv(out)
    return meta, merged
