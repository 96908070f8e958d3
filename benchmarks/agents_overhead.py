"""What the agents cost the target: throughput and p95 with no agents vs with agents.

    .venv/bin/python benchmarks/agents_overhead.py [--pairs 3] [--window-s 15] [--scale 1.0]
                                                   [--per-agent | --no-per-agent]

The e-commerce reference target (reference_workflows/ecommerce/target.yaml, default knob
values) is set up with the project's own ``run_setup`` and started with ``start_target``.
Before anything runs, the index on orders(customer_id) is created: without it one
full-scan endpoint (customer_orders) takes most of the server's time and the throughput
measures that scan, not the rest of the stack the agents watch.

Each window is a real ``tasks.window.measure_window`` (the code path of a run: Locust
subprocess, psutil sampler, gate, store transaction) with ``agents=[]`` ("none") or
``agents=agents_for(spec)`` ("all": database with statement capture, application with
py-spy bursts, frontend with Chromium when installed). The target is restarted before
every window: with the capture env (``capture_env_for``) for windows that run the database
agent, without it otherwise, so the capture's own cost is part of the measured overhead.
Windows are interleaved in pairs whose order alternates (none/all, all/none, ...) so a
linear drift of the shared machine cancels; the ratio of each pair and their median are
printed. ``--per-agent`` then measures each agent alone against its own "none" window.
Throughput is requests per second from the per-request samples of the measured part.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tasks.agents.base import Agent
from tasks.agents.frontend.agent import find_chromium
from tasks.agents.registry import agents_for, capture_env_for
from tasks.budget import Budget, Ledger
from tasks.changes.runtime import Runtime
from tasks.db.ident import create_index_sql
from tasks.db.url import sqlite_path
from tasks.spec import TargetSpec, load_spec
from tasks.store import Store
from tasks.target import database_url, run_setup, start_target, stop_target
from tasks.window import Window, measure_window

REPO = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO / "reference_workflows" / "ecommerce" / "target.yaml"
PAIRS = 3
WINDOW_S = 15.0
WARMUP_S = 3.0
SCALE = 1.0  # the seed's --scale (1.0: the spec's own setup, 500k orders)
PER_AGENT = False  # one more pair per agent: ~2.5 min more
INDEX = ("idx_orders_customer_id", "orders", ["customer_id"])
SETUP_TIMEOUT_S = 120.0
TARGET_OVERHEAD_GOAL = 0.05  # issue 3: all agents together at most 5% of the throughput


def bench_spec(window_s: float, scale: float, users: int | None) -> TargetSpec:
    """The reference spec with this benchmark's window length (and seed scale, users)."""
    spec = load_spec(SPEC_PATH)
    update: dict[str, Any] = {"duration_s": window_s, "warmup_s": WARMUP_S}
    if users is not None:
        update.update(users=users, spawn_rate=users)
    load = spec.load.model_copy(update=update)
    setup = [list(cmd) + (["--scale", str(scale)] if scale != 1.0 and "seed" in " ".join(cmd) else [])
             for cmd in spec.setup]
    return spec.model_copy(update={"load": load, "setup": setup})


def prepare_database(spec: TargetSpec, workdir: Path) -> float:
    """Seed with the spec's setup, then index orders(customer_id); returns the seconds taken."""
    t0 = time.monotonic()
    run_setup(spec, workdir, timeout_s=SETUP_TIMEOUT_S)
    path = sqlite_path(database_url(spec, workdir))
    assert path is not None
    name, table, columns = INDEX
    con = sqlite3.connect(path)
    try:
        con.execute(create_index_sql(name, table, columns))
        con.commit()
    finally:
        con.close()
    return time.monotonic() - t0


def measure_one(spec: TargetSpec, workdir: Path, store: Store, run_id: str, label: str,
                agents: list[Agent]) -> tuple[Window, float]:
    """Start the target afresh (capture env only when an agent needs it), measure, stop."""
    extra_env = capture_env_for(agents, workdir)
    config = spec.default_config()
    t0 = time.monotonic()
    handle = start_target(spec, workdir, config, extra_env=extra_env)
    try:
        rt = Runtime(spec, workdir, handle, config, database_url(spec, workdir, handle.port), extra_env)
        window = measure_window(store, run_id, rt, label, agents=agents, ledger=Ledger(Budget()), max_attempts=1)
    finally:
        stop_target(handle)
    return window, time.monotonic() - t0


def target_cpu_pct(store: Store, window: Window) -> float:
    """Mean CPU of the target's process tree over the window (% of one core, psutil series)."""
    rows = store.rows("SELECT avg(cpu_pct) AS cpu FROM resources WHERE window_id = ? AND role = 'target'",
                      [window.window_id])
    value = rows[0]["cpu"] if rows else None
    return float(value) if value is not None else float("nan")


def describe(window: Window, wall_s: float, cpu_pct: float) -> str:
    total = window.stats["total"]
    agents = ", ".join(f"{a.agent}={a.status}" for a in window.agents) or "-"
    gate = "valid" if window.valid else "INVALID: " + "; ".join(window.reasons)
    return (f"{window.label:<22} {total['rps']:8.1f} req/s  p95 {total['p95_ms']:7.1f} ms  "
            f"errors {total['error_rate']:.2%}  target CPU {cpu_pct:5.1f}%  loadgen {window.loadgen_cpu_pct:5.1f}%  "
            f"wall {wall_s:5.1f} s  [{agents}] {gate}")


Pair = tuple[Window, Window]


def measure_pairs(spec: TargetSpec, workdir: Path, store: Store, name: str, agents: list[Agent],
                  pairs: int, cpu: dict[str, float]) -> list[Pair]:
    """``pairs`` (none, with) pairs, the order alternating from one pair to the next."""
    out = []
    for i in range(pairs):
        order = ["none", name] if i % 2 == 0 else [name, "none"]
        got: dict[str, Window] = {}
        for cond in order:
            window, wall = measure_one(spec, workdir, store, "bench", f"{cond}-{i + 1}",
                                       [] if cond == "none" else agents)
            got[cond] = window
            cpu[window.window_id] = target_cpu_pct(store, window)
            print("  " + describe(window, wall, cpu[window.window_id]), flush=True)
        out.append((got["none"], got[name]))
    return out


def ratio(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b else float("nan")


def cpu_ms_per_request(window: Window, cpu: dict[str, float]) -> float:
    """Target CPU time per request served: mean CPU share / throughput."""
    return ratio(10 * cpu[window.window_id], window.stats["total"]["rps"])


def summarize(name: str, pairs: list[Pair], cpu: dict[str, float]) -> dict[str, float]:
    rps = [ratio(w.stats["total"]["rps"], n.stats["total"]["rps"]) for n, w in pairs]
    p95 = [ratio(w.stats["total"]["p95_ms"], n.stats["total"]["p95_ms"]) for n, w in pairs]
    per_req = [ratio(cpu_ms_per_request(w, cpu), cpu_ms_per_request(n, cpu)) for n, w in pairs]
    for i, (r, p, c) in enumerate(zip(rps, p95, per_req, strict=True), start=1):
        print(f"  pair {i}: {name}/none  throughput {r:.3f}   p95 {p:.3f}   target CPU per request {c:.3f}")
    med_rps, med_p95, med_cpu = statistics.median(rps), statistics.median(p95), statistics.median(per_req)
    invalid = sum(not w.valid for pair in pairs for w in pair)
    print(f"  => {name}: median throughput ratio {med_rps:.3f} (range {min(rps):.3f}-{max(rps):.3f}), "
          f"overhead {100 * (1 - med_rps):+.1f}% of throughput; median p95 ratio {med_p95:.3f}; "
          f"median target-CPU-per-request ratio {med_cpu:.3f}"
          + (f"  ({invalid} window(s) rejected by the gate)" if invalid else ""), flush=True)
    return {"rps_ratio": med_rps, "p95_ratio": med_p95, "overhead": 1 - med_rps, "cpu_ratio": med_cpu}


def none_spread(pairs: list[Pair]) -> str:
    """How much the agent-free windows differ among themselves: the noise the ratios sit in."""
    rps = [n.stats["total"]["rps"] for n, _ in pairs]
    p95 = [n.stats["total"]["p95_ms"] for n, _ in pairs]
    med = statistics.median(rps)
    return (f"throughput {min(rps):.1f}-{max(rps):.1f} req/s (spread {100 * (max(rps) - min(rps)) / med:.1f}% "
            f"of their median), p95 {min(p95):.1f}-{max(p95):.1f} ms")


def pyspy_self_estimate(pairs: list[Pair]) -> str:
    """The application agent's own estimate of py-spy's cost (on/off bursts within a window)."""
    values = []
    for _, w in pairs:
        for a in w.agents:
            over = a.observed.get("profiler_overhead") if a.agent == "application" else None
            if isinstance(over, dict) and over.get("measured"):
                values.append(f"duty cycle {over['duty_cycle']:.0%}, throughput while on vs off "
                              f"{-100 * (over['throughput_loss'] or 0):+.1f}%, py-spy CPU while on "
                              f"{over['pyspy_cpu_pct_while_on']:.1f}% of a core")
            elif isinstance(over, dict):
                values.append(str(over.get("reason")))
    return "; ".join(str(v) for v in values) or "n/a"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=PAIRS)
    p.add_argument("--window-s", type=float, default=WINDOW_S)
    p.add_argument("--scale", type=float, default=SCALE, help="seed scale (1.0: the spec's own data)")
    p.add_argument("--users", type=int, default=None, help="Locust users (default: the spec's)")
    p.add_argument("--per-agent", action=argparse.BooleanOptionalAction, default=PER_AGENT,
                   help="also measure each agent alone against none (one pair each)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run_all's timeout: stop the target first
    spec = bench_spec(args.window_s, args.scale, args.users)
    all_agents = agents_for(spec)
    print(f"agents_overhead: {platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {load_average()}")
    print(f"target {spec.name} (default knobs {spec.default_config()}), {spec.load.users} users, "
          f"windows {args.window_s:g} s + {WARMUP_S:g} s warm-up, {args.pairs} pairs; agents: "
          f"{', '.join(a.name for a in all_agents)}; chromium: {find_chromium() or 'not installed (frontend skips)'}")
    started = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        workdir = Path(tmp) / "work"
        seeded = prepare_database(spec, workdir)
        print(f"setup (seed scale {args.scale:g} + index {INDEX[1]}({', '.join(INDEX[2])})): {seeded:.1f} s", flush=True)
        store = Store(Path(tmp) / "bench.duckdb")
        try:
            print("none vs all agents:")
            cpu: dict[str, float] = {}
            all_pairs = measure_pairs(spec, workdir, store, "all", all_agents, args.pairs, cpu)
            results["all"] = summarize("all", all_pairs, cpu)
            print(f"  noise: the {len(all_pairs)} windows without agents span {none_spread(all_pairs)}")
            print(f"  application agent's own py-spy estimate: {pyspy_self_estimate(all_pairs)}")
            if args.per_agent:
                for agent in all_agents:
                    print(f"none vs {agent.name} alone:")
                    pairs = measure_pairs(spec, workdir, store, agent.name, [agent], 1, cpu)
                    results[agent.name] = summarize(agent.name, pairs, cpu)
                    if agent.name == "application":
                        print(f"  application agent's own py-spy estimate: {pyspy_self_estimate(pairs)}")
        finally:
            store.close()
    overhead = results["all"]["overhead"]
    verdict = "within" if overhead <= TARGET_OVERHEAD_GOAL else "OVER"
    print(f"RESULT all agents: throughput ratio {results['all']['rps_ratio']:.3f} -> overhead "
          f"{100 * overhead:+.1f}% ({verdict} the {100 * TARGET_OVERHEAD_GOAL:.0f}% target); "
          f"p95 ratio {results['all']['p95_ratio']:.3f}; target CPU per request ratio {results['all']['cpu_ratio']:.3f}")
    for name, r in results.items():
        if name != "all":
            print(f"RESULT {name} alone: throughput ratio {r['rps_ratio']:.3f} -> overhead {100 * r['overhead']:+.1f}%; "
                  f"p95 ratio {r['p95_ratio']:.3f}; target CPU per request ratio {r['cpu_ratio']:.3f}")
    print(f"wall {time.monotonic() - started:.0f} s; load average at end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
