"""A/A windows of the e-commerce reference shop, measured now, as the benchmarks that judge a rule
on them use them (not a benchmark: run_all skips _*.py).

The shop is seeded once and restarted every ``per_run`` windows, so the windows carry both the
within-run and the between-run (restart) spread that a decision and an alert meet. Each window
is measured exactly as a run measures its baseline windows (agent-free, gated, warm-up detected);
the gate may reject some, so at most ``MAX_ATTEMPTS_FACTOR`` windows are measured per valid one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from tasks.store import Store

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO / "reference_workflows" / "ecommerce" / "target.yaml"
MAX_ATTEMPTS_FACTOR = 2
# The state `make run` keeps (both planted indexes, as the database agent names them): the state a
# target's later runs restore before their baseline windows, so the one its signatures measure.
KEPT_STATE_SQL = (
    "CREATE INDEX perfagents_orders_customer_id_status ON orders(customer_id, status)",
    "CREATE INDEX perfagents_products_category_id ON products(category_id)",
)


@dataclass
class AAWindows:
    frames: dict[str, list[pl.DataFrame]]  # per run: each valid window's samples
    rows: list[dict[str, Any]]  # Store.aa_window_stats: per window and endpoint
    source: str  # one line: what was measured, for the benchmark's report


def measure_aa(
    windows: int, per_run: int, window_s: float, warmup_s: float, keep: Path | None = None, kept_state: bool = False
) -> AAWindows:
    """``windows`` valid A/A windows (fewer if the gate rejects over half of them); ``keep``: copy
    the store that holds them there (a later ``--store`` run re-reads them without measuring);
    ``kept_state``: of the shop with KEPT_STATE_SQL applied after the seed, not of the seeded one."""
    import sqlite3

    from tasks.budget import Budget, Ledger
    from tasks.changes.runtime import Runtime
    from tasks.spec import load_spec
    from tasks.target import database_url, run_setup, start_target, stop_target
    from tasks.window import measure_window

    spec = load_spec(SPEC_PATH)
    spec = spec.model_copy(
        update={"load": spec.load.model_copy(update={"duration_s": window_s, "warmup_s": warmup_s})}
    )
    frames: dict[str, list[pl.DataFrame]] = defaultdict(list)
    done = attempts = 0
    with tempfile.TemporaryDirectory(prefix="bench-aa-") as tmp:
        workdir = Path(tmp) / "work"
        t0 = time.monotonic()
        run_setup(spec, workdir, timeout_s=120)
        print(f"setup (seed): {time.monotonic() - t0:.1f} s", flush=True)
        if kept_state:
            db = sqlite3.connect(workdir / "shop.db")
            try:
                for sql in KEPT_STATE_SQL:
                    db.execute(sql)
                db.commit()
            finally:
                db.close()
        with Store(Path(tmp) / "bench.duckdb") as store:
            config = spec.default_config()
            while done < windows and attempts < MAX_ATTEMPTS_FACTOR * windows:
                run_id = f"aa-{uuid.uuid4().hex[:8]}"
                store.insert_run(
                    run_id,
                    target=spec.name,
                    scope="quick-win",
                    flow="benchmark",
                    spec={},
                    goals=[],
                    quality=[],
                    budget={},
                    code_version=None,
                )
                handle = start_target(spec, workdir, config)
                try:
                    rt = Runtime(
                        spec, workdir, handle, config, database_url(spec, workdir, handle.port), {}
                    )
                    for _ in range(min(per_run, windows - done)):
                        attempts += 1
                        w = measure_window(
                            store,
                            run_id,
                            rt,
                            f"baseline-{attempts}",
                            agents=[],
                            ledger=Ledger(Budget()),
                            max_attempts=1,
                        )
                        total = w.stats["total"]
                        print(
                            f"  window {attempts} ({run_id}): p95 {total['p95_ms']} ms, rps {total['rps']}, "
                            f"{'valid' if w.valid else 'rejected: ' + '; '.join(w.reasons)}",
                            flush=True,
                        )
                        if w.valid:
                            done += 1
                            frames[run_id].append(w.samples)
                finally:
                    stop_target(handle)
            rows = store.aa_window_stats(spec.name)
        if keep is not None:  # the file and its WAL (the store commits to the WAL: tasks/store/checkpoint.py)
            for suffix in ("", ".wal"):
                if (Path(tmp) / f"bench.duckdb{suffix}").is_file():
                    shutil.copyfile(Path(tmp) / f"bench.duckdb{suffix}", f"{keep}{suffix}")
    source = (
        f"measured: {done} valid A/A windows of {attempts} ({window_s:g} s + {warmup_s:g} s warm-up, "
        f"{spec.load.users} users) on the {spec.name} reference shop"
        f"{' in its kept state (both planted indexes)' if kept_state else ' as seeded'}, target restarted every {per_run}"
    )
    return AAWindows(dict(frames), rows, source)
