"""A change on trial: the endpoint it aims at, the regime, the quality thresholds, when to look again."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl

from tasks.analysis.stats import window_stats
from tasks.expressions import parse_expressions
from tasks.findings import Candidate
from tasks.trial import can_look_again, look, start_trial, trial_load_s

USERS = 20


def window(seed: int, catalog_ms: float = 5.0, orders_ms: float = 300.0, *, rps: float = 100.0,
           valid: bool = True, errors_only: bool = False, catalog_tail_ms: float | None = None,
           n_orders: int = 100) -> SimpleNamespace:
    """A catalog beside a slow orders tail (5 % of requests) that decides the total's p95;
    ``catalog_tail_ms``: one catalog request in ten takes that long instead."""
    rng = np.random.default_rng(seed)
    n_catalog = 1900
    names = ["catalog"] * n_catalog + ["orders"] * n_orders
    catalog = rng.lognormal(np.log(catalog_ms), 0.3, n_catalog)
    if catalog_tail_ms is not None:
        catalog[: n_catalog // 10] = rng.lognormal(np.log(catalog_tail_ms), 0.1, n_catalog // 10)
    latencies = np.concatenate([catalog, rng.lognormal(np.log(orders_ms), 0.2, n_orders)])
    order = rng.permutation(len(names))
    duration = len(names) / rps
    samples = pl.DataFrame({"endpoint": np.array(names)[order], "latency_ms": latencies[order],
                            "ts": np.linspace(0.0, duration, len(names)), "error": [None] * len(names),
                            "bytes": [100] * len(names), "status": [200] * len(names), "method": ["GET"] * len(names)},
                           schema_overrides={"error": pl.Utf8, "status": pl.Int32})
    return SimpleNamespace(samples=samples, stats=window_stats(samples, duration), duration_s=duration,
                           valid=valid, errors_only=errors_only, reasons=["error_rate 0.2 above 0.01"] if errors_only else [],
                           findings=[])


class Ledger:
    def __init__(self, windows_left: int) -> None:
        self.windows_left = windows_left

    def exhausted_by(self, next_load_s: float = 0.0, next_iteration: bool = True) -> str | None:
        return None if next_load_s <= self.windows_left * 10.0 else "minutes"


def make_run(state: list[SimpleNamespace], quality: str = "error_rate<=0.01,p99_ms<=1.1*baseline",
             windows_left: int = 10) -> SimpleNamespace:
    spec = SimpleNamespace(load=SimpleNamespace(users=USERS), knobs={})
    request = SimpleNamespace(quality=parse_expressions(quality))
    return SimpleNamespace(noise=SimpleNamespace(kept_aa=state, baseline_aa=state), baseline=state[-1], spec=spec, request=request,
                           responses=None, ledger=Ledger(windows_left))


def index_on(endpoint: str | None) -> Candidate:
    return Candidate(kind="create_index", params={"name": "i"}, description="index", endpoint=endpoint)


def test_a_change_aimed_at_an_endpoint_is_judged_on_that_endpoint() -> None:
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("catalog"), "c1", {})
    verdict = look(run, trial, window(2, catalog_ms=3.0))
    assert verdict.effect["endpoint"] == "catalog" and verdict.effect["ratio"] < 0.7
    assert verdict.outcome == "undecided"  # x0.6 is not decisive at the first look
    assert can_look_again(run, trial, 10.0)
    verdict = look(run, trial, window(3, catalog_ms=3.0))
    assert verdict.outcome == "better" and not can_look_again(run, trial, 10.0)


def test_a_window_short_of_the_endpoints_requests_moves_the_judgement_to_the_total_only_when_very_short() -> None:
    # a warm-up-shortened A/A window with 45 of the endpoint's requests: the arms still average >= 50
    run = make_run([window(0), window(1, n_orders=45)])
    verdict = look(run, start_trial(run, index_on("orders"), "c1", {}), window(2, orders_ms=10.0))
    assert verdict.effect["endpoint"] == "orders" and verdict.outcome == "better"
    # one with 20 (under half of 50): the endpoint's median is not judged from it
    run = make_run([window(0), window(1, n_orders=20)])
    verdict = look(run, start_trial(run, index_on("orders"), "c1", {}), window(2, orders_ms=10.0))
    assert verdict.effect["endpoint"] == "total"


def test_a_decisive_gain_is_kept_at_the_first_look() -> None:
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("orders"), "c1", {})
    assert look(run, trial, window(2, orders_ms=10.0)).outcome == "better"


def test_a_window_with_errors_or_rejected_by_the_gate_ends_the_trial() -> None:
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("catalog"), "c1", {})
    verdict = look(run, trial, window(2, valid=False, errors_only=True))
    assert verdict.outcome == "worse" and "quality threshold broken" in verdict.reason
    assert not can_look_again(run, trial, 10.0)


def test_a_p99_threshold_breaks_only_on_evidence() -> None:
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("catalog"), "c1", {})
    look(run, trial, window(2, catalog_ms=2.0, orders_ms=330.0))  # p99 ~8 % over: within the noise
    verdict = look(run, trial, window(3, catalog_ms=2.0, orders_ms=330.0))
    assert verdict.outcome == "better", verdict.reason
    trial = start_trial(run, index_on("catalog"), "c2", {})
    look(run, trial, window(4, catalog_ms=2.0, orders_ms=900.0))  # p99 three times the baseline's
    verdict = look(run, trial, window(5, catalog_ms=2.0, orders_ms=900.0))
    assert verdict.outcome == "worse" and "p99_ms<=1.1*baseline" in verdict.reason


def test_a_saturated_state_is_judged_on_throughput() -> None:
    slow = [window(i, catalog_ms=400.0, orders_ms=900.0, rps=40.0) for i in range(2)]  # 40 rps x 0.4 s = 16 of 20 users
    run = make_run(slow, quality="error_rate<=0.01")
    trial = start_trial(run, index_on("catalog"), "c1", {})
    verdict = look(run, trial, window(5, catalog_ms=300.0, orders_ms=700.0, rps=55.0))
    assert verdict.effect["metric"] == "rps" and verdict.effect["regime"] == "saturated"
    assert verdict.effect["endpoint"] == "catalog"  # the endpoint the index aims at: its share of the throughput
    assert verdict.effect["ratio"] > 1.3
    assert verdict.effect["tail"]["metric"] == "p95_ms"  # reported beside the throughput, not judged on
    assert verdict.effect["tail"]["ratio"] < 1.0  # catalog 400 -> 300 ms
    trial = start_trial(run, index_on(None), "c2", {})
    assert look(run, trial, window(6, catalog_ms=300.0, orders_ms=700.0, rps=55.0)).effect["endpoint"] in (None, "total")


def test_no_look_again_without_budget_for_a_pair() -> None:
    run = make_run([window(0), window(1)], windows_left=1)
    trial = start_trial(run, index_on("catalog"), "c1", {})
    look(run, trial, window(2, catalog_ms=3.0))
    assert trial.verdict.outcome == "undecided" and not can_look_again(run, trial, 10.0)


def test_a_trial_needs_budget_for_its_first_ordinary_decision() -> None:
    run = make_run([window(0), window(1)])
    assert trial_load_s(run, index_on("catalog"), 10.0) == 30.0  # the first window, then an A and a B
    knob = Candidate(kind="set_knob", params={"knob": "workers", "value": 2}, description="workers")
    run.spec.knobs = {"workers": SimpleNamespace(needs_restart=True)}
    patch = Candidate(kind="code_patch", params={"paths": ["app.py"]}, description="patch")
    run.rt = SimpleNamespace(handle=SimpleNamespace(process=object()))  # a target perfagents started
    assert trial_load_s(run, knob, 10.0) == trial_load_s(run, patch, 10.0) == 30.0  # switched with a restart
    run.rt.handle.process = None  # attached to a running target: no restart, so B windows only
    assert trial_load_s(run, knob, 10.0) == trial_load_s(run, patch, 10.0) == 20.0


def test_a_median_gain_that_slows_the_tail_is_reverted() -> None:
    """Judged on the median, kept only when the same endpoint's p95 is not shown slower."""
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("catalog"), "c1", {})
    for seed in (2, 3):
        verdict = look(run, trial, window(seed, catalog_ms=2.5, catalog_tail_ms=40.0))
    assert verdict.outcome == "worse" and "p95" in verdict.reason
    assert verdict.effect["metric"] == "p50_ms" and verdict.effect["ratio"] < 0.6
    assert verdict.effect["tail"]["metric"] == "p95_ms" and verdict.effect["tail"]["ratio"] > 3


def test_a_median_gain_reports_its_tail_effect() -> None:
    run = make_run([window(0), window(1)])
    trial = start_trial(run, index_on("catalog"), "c1", {})
    for seed in (2, 3):
        verdict = look(run, trial, window(seed, catalog_ms=3.0))
    assert verdict.outcome == "better" and verdict.effect["metric"] == "p50_ms"
    assert verdict.effect["tail"]["ratio"] < 0.8  # the p95 moved with it
