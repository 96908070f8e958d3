"""A writer process for the store-sharing tests: ``python writer.py STORE NAME RUNS SAMPLES [PAUSE_S]``.

Writes RUNS runs the way a run does (the run row, then per run two windows in one transaction
each, with SAMPLES request samples and their endpoint stats, then finish_run), each through the
store's own per-use connection, PAUSE_S apart (a run's windows are seconds apart). Prints ``ready`` after its first run, then one JSON line at the
end: the epoch of its first and last write, its opens and the seconds they waited for the lock.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import polars as pl

from tasks.analysis.stats import endpoint_stats_frame
from tasks.store import Store, now


def write_run(store: Store, run_id: str, samples: int, rng: np.random.Generator) -> None:
    store.insert_run(run_id, target="shared", scope="quick-win", flow="optimize-target", spec={}, goals=[],
                     quality=[], budget={}, code_version=None)
    for k in range(2):
        window_id = f"{run_id}-w{k}"
        frame = pl.DataFrame({"ts": np.sort(rng.uniform(0, 10, samples)), "endpoint": ["home"] * samples,
                              "method": ["GET"] * samples, "latency_ms": rng.lognormal(2, 0.4, samples),
                              "status": [200] * samples, "bytes": [100] * samples,
                              "error": pl.Series([None] * samples, dtype=pl.Utf8)})
        with store.transaction():
            store.insert_window(window_id, run_id=run_id, label=f"baseline-{k + 1}", attempt=1, config={},
                                change_id=None, started_at=now(), duration_s=10.0, warmup_s=1.0, users=4,
                                loadgen_cpu_pct=10.0, valid=True, reason=None)
            store.insert_window_frame("samples", window_id, frame)
            store.insert_window_frame("endpoint_stats", window_id, endpoint_stats_frame(frame, 10.0, window_id))
    store.finish_run(run_id, "budget_exhausted", {"status": "budget_exhausted"}, [("wall", 1.0, "s")])


def main(path: str, name: str, runs: int, samples: int, pause_s: float = 0.0) -> None:
    store = Store(path)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    first = time.time()
    for i in range(runs):
        write_run(store, f"{name}-{i:03d}", samples, rng)
        if i == 0:
            print("ready", flush=True)
        time.sleep(pause_s)
    waits = list(store.waits.waits)
    print(json.dumps({"first": first, "last": time.time(), "opens": store.waits.opens,
                      "retries": store.waits.retries, "waited_s": sum(waits), "max_wait_s": max(waits)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
