"""Does pinning the target and the load generator to disjoint CPUs make windows agree better?

    .venv/bin/python benchmarks/pinning.py [--windows 5] [--window-s 15]

The e-commerce reference target (orders(customer_id) indexed, as in agents_overhead.py) is
started once; agent-free windows (``tasks.window.measure_window``, the code path of a run)
alternate between pinned (PERFAGENTS_PIN_CPUS=true: the target's tree on the upper half of the
CPUs, Locust and the toolkit on the lower half; tasks/target/pinning.py) and unpinned, so a
drift of the machine falls on both. Per condition it prints the windows' p95 and throughput,
the A/A noise floor (tasks/analysis/noise.py, as a run reports it) and the spread of log p95 (sd); the
ratios pinned / unpinned close the run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from agents_overhead import bench_spec, prepare_database  # noqa: E402

from tasks.analysis.noise import estimate_noise, estimate_rps_noise  # noqa: E402
from tasks.budget import Budget, Ledger  # noqa: E402
from tasks.changes.runtime import Runtime  # noqa: E402
from tasks.store import Store  # noqa: E402
from tasks.target import database_url, start_target, stop_target  # noqa: E402
from tasks.target.pinning import PIN_ENV, plan_cpus  # noqa: E402
from tasks.window import Window, measure_window  # noqa: E402

WINDOWS = 5
WINDOW_S = 15.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=WINDOWS, help="windows per condition")
    parser.add_argument("--window-s", type=float, default=WINDOW_S)
    args = parser.parse_args()
    plan = plan_cpus(True)
    if plan is None:
        print("one CPU: nothing to pin apart")
        return 0
    print(f"CPUs: target {sorted(plan.target)}, load generator and toolkit {sorted(plan.others)}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perfagents-pinning-") as tmp:
        workdir = Path(tmp)
        spec = bench_spec(args.window_s, 1.0, None)
        print(f"setup: {prepare_database(spec, workdir):.0f} s")
        store = Store(workdir / "bench.duckdb")
        config = spec.default_config()
        handle = start_target(spec, workdir, config)
        windows: dict[str, list[Window]] = {"unpinned": [], "pinned": []}
        try:
            rt = Runtime(spec, workdir, handle, config, database_url(spec, workdir, handle.port), {})
            measure_window(store, "bench", rt, "warm", agents=[], ledger=Ledger(Budget()), max_attempts=1)
            for i in range(args.windows):
                for cond in (("unpinned", "pinned") if i % 2 == 0 else ("pinned", "unpinned")):
                    os.environ[PIN_ENV] = "true" if cond == "pinned" else "false"
                    w = measure_window(store, "bench", rt, f"{cond}-{i + 1}", agents=[], ledger=Ledger(Budget()))
                    total = w.stats["total"]
                    print(f"  {w.label:<12} p95 {total['p95_ms']:7.2f} ms  {total['rps']:7.1f} req/s  "
                          f"warm-up {w.warmup_s:4.1f} s  foreign {w.foreign_cores:.2f} cores  "
                          f"{'valid' if w.valid else 'INVALID: ' + '; '.join(w.reasons)}", flush=True)
                    if w.valid:
                        windows[cond].append(w)
        finally:
            os.environ.pop(PIN_ENV, None)
            stop_target(handle)
            store.close()
    print(f"\n{sum(len(v) for v in windows.values())} valid windows in {time.monotonic() - started:.0f} s")
    summary = {}
    for cond, ws in windows.items():
        if len(ws) < 2:
            print(f"{cond}: too few valid windows")
            continue
        floor = estimate_noise([w.samples for w in ws]).noise_rel
        rps_floor = estimate_rps_noise([w.samples for w in ws])
        logs = [math.log(w.stats["total"]["p95_ms"]) for w in ws]
        p95 = statistics.median(w.stats["total"]["p95_ms"] for w in ws)
        rps = statistics.median(w.stats["total"]["rps"] for w in ws)
        summary[cond] = (floor, statistics.stdev(logs), p95, rps, rps_floor)
        print(f"{cond:<9} p95 floor {floor:.3f}  sd(log p95) {statistics.stdev(logs):.3f}  rps floor {rps_floor:.3f}  "
              f"median p95 {p95:.2f} ms  median {rps:.1f} req/s")
    if len(summary) == 2:
        (fp, sp, pp, rp, _), (fu, su, pu, ru, _) = summary["pinned"], summary["unpinned"]
        print(f"pinned / unpinned: floor x{fp / fu:.2f}, sd x{sp / su:.2f}, p95 x{pp / pu:.2f}, rps x{rp / ru:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
