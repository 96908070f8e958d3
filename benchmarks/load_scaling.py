"""Does a second Locust process add throughput on this machine? And how far is Locust from wrk?

    .venv/bin/python benchmarks/load_scaling.py [--window-s 8] [--rounds 2] [--users 32] [--json PATH]

The target is the cheapest one uvicorn serves (benchmarks/_static_app.py: a bare ASGI callable,
one static route, uvloop + httptools, one process), started as a real subprocess, so that one
Locust process (FastHttpUser, no wait between requests) is the limit. Every window is a real
``tasks.load.runner.run_load_test`` window (the code path of a run: every request sampled,
the workers' samples merged, the merged count checked against Locust's total). Conditions,
interleaved over ``--rounds`` so a drift of the machine falls on all of them:

    1 proc pinned    one Locust process on CPU 0, the target on CPU 1
    2 procs pinned   a master and 2 workers on CPU 0, the target on CPU 1 (the generator keeps
                     one CPU: what master/worker costs at equal CPU)
    1 proc shared    nothing pinned
    2 procs shared   a worker on each CPU, the target free to run on both

Per condition: requests/s of the measured part, the busiest Locust process's CPU (what the
gate checks), all Locust processes' CPU, the target's CPU (each % of one core) and their sum
(the machine has 100 % per CPU). Then wrk (``-t1``, pinned like "1 proc pinned", and ``-t2``
unpinned) on the same route with as many connections as Locust has users: the physical
reference. The ratios (2 procs / 1 proc, Locust / wrk) close the run. Without wrk on PATH
(``apt-get install -y wrk``) its lines say "wrk missing".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import polars as pl  # noqa: E402

from tasks.load.runner import run_load_test  # noqa: E402
from tasks.resources import ForeignCpuMeter, ProcessTreeSampler, process_tree  # noqa: E402
from tasks.spec import TargetSpec  # noqa: E402
from tasks.target.pinning import set_cpus  # noqa: E402
from tasks.target.process import free_port, spawn, terminate_tree  # noqa: E402

RUN_ALL_TIMEOUT_S = 420
APP = Path(__file__).resolve().with_name("_static_app.py")
ROUTE = "/static"
WINDOW_S = 8.0
WARMUP_S = 2.0
USERS = 32
ROUNDS = 2
READY_TIMEOUT_S = 30.0
LOCUSTFILE = f'''
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser


class Static(FastHttpUser):
    wait_time = constant(0)

    @task
    def static(self):
        self.client.get("{ROUTE}", name="static")
'''
# (name, Locust processes, Locust CPUs, target CPUs): "gen" = the first allowed CPU,
# "tgt" = the second, "all" = every allowed CPU (workers round-robin), None = not pinned
CONDITIONS = [
    ("1 proc pinned", 1, "gen", "tgt"),
    ("2 procs pinned", 2, "gen", "tgt"),
    ("1 proc shared", 1, None, None),
    ("2 procs shared", 2, "all", None),
]


def cpu_set(which: str | None, cpus: list[int]) -> list[int] | None:
    return {"gen": [cpus[0]], "tgt": [cpus[-1]], "all": cpus, None: None}[which]


def start_app(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (workdir / "app.log").open("wb")
    proc = spawn([sys.executable, str(APP), str(port)], cwd=REPO, env=dict(os.environ), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the static app exited: {(workdir / 'app.log').read_text()[-300:]}")
        try:
            if httpx.get(url + ROUTE, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the static app did not answer")
        time.sleep(0.1)


def mean_cpu(frame: pl.DataFrame, start: float, end: float) -> float:
    part = frame.filter((pl.col("ts") > start) & (pl.col("ts") <= end + 0.5))
    return float(part["cpu_pct"].mean()) if part.height else math.nan  # type: ignore[arg-type]


def locust_window(spec: TargetSpec, url: str, app_pid: int, workdir: Path, label: str, processes: int,
                  gen: list[int] | None, tgt: list[int] | None, cpus: list[int], window_s: float) -> dict[str, Any]:
    set_cpus(process_tree(app_pid), tgt or cpus)
    sampler = ProcessTreeSampler(lambda: process_tree(app_pid), "target").start()
    meter = ForeignCpuMeter().start()
    try:
        result = run_load_test(spec, url, workdir, label=label, processes=processes, cpus=gen,
                               warmup_s=WARMUP_S, duration_s=window_s)
    finally:
        target, outside = sampler.stop(), meter.stop()
    errors = int(result.samples["error"].is_not_null().sum())
    return {"rps": result.rps, "loadgen_busiest": result.loadgen_cpu_pct,
            "loadgen_total": sum(result.loadgen_cpu_by_role.values()),
            "target": mean_cpu(target, result.measure_start, result.ended_at),
            "merged": result.recorded_requests, "locust_total": result.locust_requests,
            "mismatch": result.count_mismatch, "errors": errors, "outside_cores": outside}


def wrk_run(url: str, app_pid: int, threads: int, connections: int, seconds: float, pin: list[int] | None,
            tgt: list[int] | None, cpus: list[int]) -> dict[str, Any] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    set_cpus(process_tree(app_pid), tgt or cpus)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", url + ROUTE]
    sampler = ProcessTreeSampler(lambda: process_tree(app_pid), "target").start()
    meter = ForeignCpuMeter().start()
    t0 = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if pin:
        set_cpus([proc.pid], pin)  # every thread wrk has started by now; later ones inherit
    wrk_sampler = ProcessTreeSampler(lambda: process_tree(proc.pid), "wrk").start()
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    finally:
        wrk_cpu, target, outside = wrk_sampler.stop(), sampler.stop(), meter.stop()
    text = out.decode(errors="replace")
    found = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if found is None:
        raise RuntimeError(f"wrk printed no Requests/sec: {text[-300:]}")
    return {"rps": float(found.group(1)), "wrk_cpu": mean_cpu(wrk_cpu, t0 + 1, t0 + seconds),
            "target": mean_cpu(target, t0 + 1, t0 + seconds), "outside_cores": outside}


def quiet_ceiling(rows: list[dict[str, Any]], cores: int) -> dict[str, float]:
    """What an idle machine would allow, from each window's CPU cost per request: one Locust process
    is one core at most; two share the machine's cores with the target."""
    locust = statistics.median(r["loadgen_total"] / 100 / r["rps"] * 1000 for r in rows if r["rps"] > 0)
    target = statistics.median(r["target"] / 100 / r["rps"] * 1000 for r in rows if r["rps"] > 0)
    one = min(1000 / locust, (cores - 1) * 1000 / target)
    two = min(2000 / locust, cores * 1000 / (locust + target))
    return {"locust_ms": locust, "target_ms": target, "one_rps": one, "two_rps": two}


def med(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return statistics.median(values) if values else math.nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window-s", type=float, default=WINDOW_S)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("one CPU: nothing to scale over")
        return 0
    print(f"CPUs {cpus}; generator CPU {cpus[0]}, target CPU {cpus[-1]} when pinned; {args.users} users, "
          f"{args.window_s:g} s windows after {WARMUP_S:g} s warm-up, {args.rounds} rounds", flush=True)
    started = time.monotonic()
    windows: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in CONDITIONS}
    wrk: dict[str, dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="perfagents-load-scaling-") as tmp:
        workdir = Path(tmp)
        (workdir / "locustfile.py").write_text(LOCUSTFILE)
        app, url = start_app(workdir)
        try:
            spec = TargetSpec(name="static", base_url=url, spec_dir=workdir,
                              load={"locustfile": "locustfile.py", "users": args.users,
                                    "spawn_rate": args.users, "duration_s": args.window_s, "warmup_s": WARMUP_S})
            for r in range(args.rounds):
                for name, processes, gen, tgt in (CONDITIONS if r % 2 == 0 else CONDITIONS[::-1]):
                    row = locust_window(spec, url, app.pid, workdir / f"r{r}", name.replace(" ", "-"), processes,
                                        cpu_set(gen, cpus), cpu_set(tgt, cpus), cpus, args.window_s)
                    windows[name].append(row)
                    print(f"  {name:<15} {row['rps']:8.0f} req/s  busiest Locust {row['loadgen_busiest']:5.1f}%  "
                          f"all Locust {row['loadgen_total']:5.1f}%  target {row['target']:5.1f}%  "
                          f"outside {row['outside_cores']:.2f} cores  "
                          f"merged {row['merged']} / Locust {row['locust_total']}  errors {row['errors']}"
                          f"{'  MISMATCH ' + row['mismatch'] if row['mismatch'] else ''}", flush=True)
            wrk["wrk -t1 pinned"] = wrk_run(url, app.pid, 1, args.users, args.window_s, cpu_set("gen", cpus),
                                            cpu_set("tgt", cpus), cpus)
            wrk["wrk -t2 shared"] = wrk_run(url, app.pid, 2, args.users, args.window_s, None, None, cpus)
        finally:
            terminate_tree(app, 5)
    print(f"\n{'condition':<15} {'req/s':>8} {'busiest':>8} {'Locust':>8} {'target':>8} {'sum':>6} {'outside':>8}"
          "  (median; CPU in % of one core, outside load in cores)")
    summary: dict[str, Any] = {}
    for name, rows in windows.items():
        s = {k: med(rows, k) for k in ("rps", "loadgen_busiest", "loadgen_total", "target", "outside_cores")}
        summary[name] = s
        print(f"{name:<15} {s['rps']:8.0f} {s['loadgen_busiest']:7.1f}% {s['loadgen_total']:7.1f}% "
              f"{s['target']:7.1f}% {s['loadgen_total'] + s['target']:5.0f}% {s['outside_cores']:8.2f}")
    for name, row in wrk.items():
        if row is None:
            print(f"{name:<15} wrk missing (apt-get install -y wrk)")
        else:
            print(f"{name:<15} {row['rps']:8.0f}  wrk {row['wrk_cpu']:5.1f}%  target {row['target']:5.1f}%  "
                  f"outside {row['outside_cores']:.2f} cores")
    ratios = {
        "2/1 pinned (same generator CPU)": summary["2 procs pinned"]["rps"] / summary["1 proc pinned"]["rps"],
        "2/1 shared (a worker per CPU)": summary["2 procs shared"]["rps"] / summary["1 proc shared"]["rps"],
    }
    best_locust = max(s["rps"] for s in summary.values())
    for name, row in wrk.items():
        if row is not None:
            ratios[f"best Locust / {name}"] = best_locust / row["rps"]
    print("\nratios: " + "; ".join(f"{k} x{v:.2f}" for k, v in ratios.items()))
    ceiling = quiet_ceiling([r for rows in windows.values() for r in rows], len(cpus))
    summary["cost_per_request"] = ceiling
    print(f"CPU per request (median over windows, robust to outside load): Locust {ceiling['locust_ms']:.3f} ms, "
          f"target {ceiling['target_ms']:.3f} ms"
          + "".join(f", {name} {row['wrk_cpu'] / 100 / row['rps'] * 1000:.4f} ms"
                    for name, row in wrk.items() if row is not None))
    print(f"estimate for this machine idle (from those costs, not measured): 1 process <= {ceiling['one_rps']:.0f} req/s, "
          f"2 processes <= {ceiling['two_rps']:.0f} req/s: x{ceiling['two_rps'] / ceiling['one_rps']:.2f} at best")
    mismatches = [r["mismatch"] for rows in windows.values() for r in rows if r["mismatch"]]
    print(f"merged sample count == Locust's total in {sum(len(v) for v in windows.values()) - len(mismatches)} "
          f"of {sum(len(v) for v in windows.values())} windows; {time.monotonic() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"windows": windows, "summary": summary, "wrk": wrk, "ratios": ratios,
                                         "users": args.users, "window_s": args.window_s}, indent=2, default=str))
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
