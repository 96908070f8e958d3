"""What sharing one store costs: opening the file per read or transaction, and waiting for the lock.

    .venv/bin/python benchmarks/store_sharing.py [--seed-runs 40] [--samples 5000] [--runs 15] [--json PATH]

The store holds its DuckDB file only for one read or one transaction (tasks/store/connection.py),
so runs, the dashboard and `history` interleave on one file. This prints, measured in this run:

1. **Per-use opening against a held connection**, on a store seeded with ``--seed-runs`` runs of
   two windows of ``--samples`` request samples: the dashboard's runs query, and one window's write
   (its samples and endpoint stats in one transaction); medians in ms and the overhead per use.
2. **Contention, in real processes**: one writer alone writes ``--runs`` runs the way a run does
   (two windows each, then the run's end), then two writers at once while a reader polls the
   dashboard's runs view every 0.1 s. Per role: opens, lock waits (p50, p95, max ms), the
   reader's response time, and the writers' windows per second against the writer alone.
3. **The live window**: one update (read what the samples CSV gained, rewrite the run's live
   row) in wall and CPU ms, the window under load growing by ``--live-rps`` requests a second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tasks.analysis.stats import endpoint_stats_frame
from tasks.live import LiveWindow
from tasks.results.dashboard.views import runs_view
from tasks.store import Store, now

REPEATS = 30
READ_EVERY_S = 0.1


def samples(rng: np.random.Generator, n: int) -> pl.DataFrame:
    return pl.DataFrame({"ts": np.sort(rng.uniform(0, 20, n)), "endpoint": rng.choice(["catalog", "search", "cart"], n),
                         "method": ["GET"] * n, "latency_ms": rng.lognormal(2.0, 0.6, n), "status": [200] * n,
                         "bytes": [500] * n, "error": pl.Series([None] * n, dtype=pl.Utf8)})


def write_window(store: Store, run_id: str, k: int, frame: pl.DataFrame) -> None:
    window_id = f"{run_id}-w{k}"
    with store.transaction():
        store.insert_window(window_id, run_id=run_id, label=f"baseline-{k + 1}", attempt=1, config={}, change_id=None,
                            started_at=now(), duration_s=20.0, warmup_s=2.0, users=10, loadgen_cpu_pct=20.0,
                            valid=True, reason=None)
        store.insert_window_frame("samples", window_id, frame)
        store.insert_window_frame("endpoint_stats", window_id, endpoint_stats_frame(frame, 20.0, window_id))


def write_runs(store: Store, name: str, runs: int, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    for i in range(runs):
        run_id = f"{name}-{i:04d}"
        store.insert_run(run_id, target=name, scope="quick-win", flow="optimize-target", spec={}, goals=[], quality=[],
                         budget={}, code_version=None)
        for k in range(2):
            write_window(store, run_id, k, samples(rng, n))
        store.finish_run(run_id, "budget_exhausted", {"status": "budget_exhausted"}, [("wall", 1.0, "s")])
    return 2 * runs


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 2) if values else 0.0


def median_ms(fn: Any, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return ms(times, 50)


def per_use_overhead(path: Path, n: int) -> dict[str, Any]:
    store = Store(path)
    rng = np.random.default_rng(7)
    frame = samples(rng, n)
    reports = path.parent / "reports"
    out: dict[str, Any] = {"store_mb": round(path.stat().st_size / 2**20, 1)}
    out["read_per_use_ms"] = median_ms(lambda: runs_view(store, reports))
    with store.session():
        out["read_held_ms"] = median_ms(lambda: runs_view(store, reports))
    counter = iter(range(10**6))
    store.insert_run("bench-w", target="bench", scope=None, flow=None, spec={}, goals=[], quality=[], budget={},
                     code_version=None)
    out["write_per_use_ms"] = median_ms(lambda: write_window(store, "bench-w", next(counter), frame))
    t = time.perf_counter()
    with store.session():  # held: the writes' log is checkpointed once, at the close, counted here
        for _ in range(REPEATS):
            write_window(store, "bench-w", next(counter), frame)
    out["write_held_ms"] = round(1000 * (time.perf_counter() - t) / REPEATS, 2)
    empty = Store(path.parent / "empty.duckdb")
    out["open_close_empty_ms"] = median_ms(lambda: empty.rows("SELECT 1"))
    out["open_close_seeded_ms"] = median_ms(lambda: store.rows("SELECT 1"))
    return out


def role(args: argparse.Namespace) -> None:
    """A child process: a writer (``--role writer``) or a reader polling until ``--stop`` exists."""
    store = Store(args.store, read_only=args.role == "reader")
    start = time.perf_counter()
    reads: list[float] = []
    windows = 0
    if args.role == "writer":
        windows = write_runs(store, args.name, args.runs, args.samples, seed=hash(args.name) % 1000)
    else:
        while not Path(args.stop).exists():
            t = time.perf_counter()
            runs_view(store, Path(args.store).parent / "reports")
            reads.append(time.perf_counter() - t)
            time.sleep(READ_EVERY_S)
    waits = list(store.waits.waits)
    print(json.dumps({"role": args.role, "elapsed_s": time.perf_counter() - start, "windows": windows,
                      "opens": store.waits.opens, "retries": store.waits.retries, "waits": waits, "reads": reads}))


def spawn(store: Path, role_name: str, name: str, args: argparse.Namespace, stop: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, __file__, "--role", role_name, "--store", str(store), "--name", name, "--runs",
           str(args.runs), "--samples", str(args.samples), "--stop", str(stop)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=240)
    if proc.returncode != 0:
        raise SystemExit(f"a child failed (exit {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def contention(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    alone_store, shared = folder / "alone.duckdb", folder / "shared.duckdb"
    Store(alone_store)
    Store(shared)
    stop = folder / "stop"
    alone = collect(spawn(alone_store, "writer", "alone", args, stop))
    reader = spawn(shared, "reader", "reader", args, stop)
    writers = [spawn(shared, "writer", name, args, stop) for name in ("left", "right")]
    try:
        both = [collect(w) for w in writers]
    finally:
        stop.touch()
    read = collect(reader)
    alone_rate = alone["windows"] / alone["elapsed_s"]
    out: dict[str, Any] = {"writer_alone_windows_per_s": round(alone_rate, 2)}
    for label, r in (("writer_left", both[0]), ("writer_right", both[1]), ("reader", read)):
        out[label] = {"opens": r["opens"], "retries": r["retries"], "wait_p50_ms": ms(r["waits"], 50),
                      "wait_p95_ms": ms(r["waits"], 95), "wait_max_ms": ms(r["waits"], 100)}
        if r["windows"]:
            out[label]["windows_per_s"] = round(r["windows"] / r["elapsed_s"], 2)
    out["reader"].update(reads=len(read["reads"]), read_p50_ms=ms(read["reads"], 50), read_p95_ms=ms(read["reads"], 95))
    together = sum(r["windows"] for r in both) / max(r["elapsed_s"] for r in both)
    out["two_writers_windows_per_s"] = round(together, 2)
    out["two_writers_over_alone"] = round(together / alone_rate, 2)
    return out


def live_update_cost(folder: Path, rps: int) -> dict[str, Any]:
    store = Store(folder / "live.duckdb")
    window = folder / "window"
    window.mkdir()
    csv = window / "change-1-b1.samples.csv"
    csv.write_text("ts,endpoint,method,latency_ms,status,bytes,error\n")
    live = LiveWindow(store, "r1", "change-1-b1", 1, window, planned_s=60.0, warmup_s=5.0)
    rng = np.random.default_rng(3)
    wall, cpu = [], []
    for second in range(30):  # a 60 s window's first 30 s, one update a second's worth of requests
        ts = time.time() + rng.uniform(0, 1, rps)
        with csv.open("a") as fh:
            fh.writelines(f"{t},catalog,GET,{lat},200,500,\n" for t, lat in zip(ts, rng.lognormal(2, 0.6, rps), strict=True))
        w, c = time.perf_counter(), time.process_time()
        live.update(done=False)
        if second:  # the first also opens (and checks) the store once
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return {"rps": rps, "updates": live.updates, "skipped": live.skipped, "wall_p50_ms": ms(wall, 50),
            "wall_max_ms": ms(wall, 100), "cpu_p50_ms": ms(cpu, 50),
            "cpu_share_of_a_core_at_2s": round(float(np.median(cpu)) / 2.0, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-runs", type=int, default=40)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--live-rps", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--role", choices=("writer", "reader"))
    for child_arg in ("--store", "--name", "--stop"):
        parser.add_argument(child_arg)
    args = parser.parse_args()
    if args.role:
        role(args)
        return
    with tempfile.TemporaryDirectory(prefix="store-sharing-") as tmp:
        folder = Path(tmp)
        seeded = folder / "seeded.duckdb"
        write_runs(Store(seeded), "seed", args.seed_runs, args.samples, seed=1)
        result = {"per_use": per_use_overhead(seeded, args.samples), "contention": contention(folder, args),
                  "live_update": live_update_cost(folder, args.live_rps),
                  "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    p = result["per_use"]
    print(f"store {p['store_mb']} MB ({args.seed_runs} runs x 2 windows x {args.samples} samples)")
    print(f"open+close: empty store {p['open_close_empty_ms']} ms, seeded {p['open_close_seeded_ms']} ms")
    print(f"runs query: per use {p['read_per_use_ms']} ms, held {p['read_held_ms']} ms "
          f"(+{p['read_per_use_ms'] - p['read_held_ms']:.1f} ms)")
    print(f"window write ({args.samples} samples): per use {p['write_per_use_ms']} ms, held {p['write_held_ms']} ms "
          f"(+{p['write_per_use_ms'] - p['write_held_ms']:.1f} ms)")
    c = result["contention"]
    print(f"writer alone: {c['writer_alone_windows_per_s']} windows/s; two writers + a reader: "
          f"{c['two_writers_windows_per_s']} windows/s together (x{c['two_writers_over_alone']})")
    for label in ("writer_left", "writer_right", "reader"):
        r = c[label]
        print(f"  {label}: {r['opens']} opens, {r['retries']} retries, lock wait p50 {r['wait_p50_ms']} ms, "
              f"p95 {r['wait_p95_ms']} ms, max {r['wait_max_ms']} ms")
    print(f"  reader: {c['reader']['reads']} reads, response p50 {c['reader']['read_p50_ms']} ms, "
          f"p95 {c['reader']['read_p95_ms']} ms")
    lv = result["live_update"]
    print(f"live window update at {lv['rps']} req/s: wall p50 {lv['wall_p50_ms']} ms (max {lv['wall_max_ms']}), "
          f"CPU p50 {lv['cpu_p50_ms']} ms = {lv['cpu_share_of_a_core_at_2s']:.2%} of a core at one update per 2 s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
