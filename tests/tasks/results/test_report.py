"""The report draws what the search measured: the Pareto front against every measured point."""

from __future__ import annotations

import re

from tasks.results.report import pareto_rows, render_html, render_markdown

STATS = {"endpoints": {"home": {"p95_ms": 20.0, "rps": 50.0}}, "total": {"p95_ms": 20.0, "rps": 50.0}}


def result_with_search() -> dict:
    front = [{"config": {"workers": 1, "cache": True}, "objectives": {"p95_ms": 9.0, "usd_per_hour": 0.05}, "chosen": True},
             {"config": {"workers": 2, "cache": True}, "objectives": {"p95_ms": 7.5, "usd_per_hour": 0.10}, "chosen": False}]
    dominated = {"config": {"workers": 2, "cache": False}, "objectives": {"p95_ms": 15.0, "usd_per_hour": 0.10},
                 "feasible": True, "source": "measured"}
    broken = {"config": {"workers": 1, "cache": False}, "objectives": {"p95_ms": 8.0, "usd_per_hour": 0.05},
              "feasible": False, "source": "measured"}
    return {"run_id": "r1", "target": "shop", "status": "completed", "stop_reason": None, "baseline": STATS,
            "final": STATS, "findings": [], "changes": [], "goals": [], "noise_floor": {"p95_rel": 0.05},
            "costs": {"wall_s": 1.0, "load_s": 1.0, "cpu_s": 1.0, "tokens": 0, "usd": 0.0},
            "pareto": front, "search_points": [*({**p, "feasible": True} for p in front), dominated, broken]}


def test_html_draws_every_measured_point_the_front_and_the_chosen_one() -> None:
    page = render_html(result_with_search())
    svg = page[page.index("Pareto front of the knob search"):]
    assert svg.count('fill="#9e9e9e"') == 3  # feasible measured points, front included
    assert svg.count('fill="#c62828"') == 1  # the one that broke a quality threshold
    assert svg.count('r="5" fill="#2e7d32"') == 2  # the front
    assert "chosen</text>" in svg and re.search(r'<path d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+"', svg)
    assert "usd_per_hour across, p95_ms up" in svg


def test_markdown_and_artifact_rows_list_the_front() -> None:
    rows = pareto_rows(result_with_search())
    assert rows[0] == {"workers": 1, "cache": True, "p95_ms": 9.0, "usd_per_hour": 0.05, "chosen": True}
    assert "## Pareto front of the knob search" in render_markdown(result_with_search())


def test_a_run_without_a_search_draws_no_front() -> None:
    result = {**result_with_search(), "pareto": [], "search_points": []}
    assert "Pareto" not in render_html(result) and "Pareto" not in render_markdown(result)
    assert pareto_rows(result) == []


def test_the_result_has_the_contract_keys_the_noise_floor_and_the_sections() -> None:
    from types import SimpleNamespace

    from tasks.budget import Budget, Ledger
    from tasks.load.generator import LoadGenerator
    from tasks.results.report import build_result
    from tasks.run import Noise

    stats = {"endpoints": {"home": {"requests": 10, "rps": 5.0, "p95_ms": 20.0}}, "total": {"requests": 10}}
    generator = LoadGenerator("auto", max_processes=2)
    generator.record(1, 95.04, saturated=True)  # rejected: the next window gets a second worker
    generator.record(2, 61.0, saturated=False)
    noise = Noise(p95_rel=0.041234, measured={"p95_rel": 0.03, "windows": 3, "regime": "steady"},
                  kept_state={"p95_rel": 0.02, "windows": 2})
    run = SimpleNamespace(
        run_id="r1", spec=SimpleNamespace(name="shop"), request=SimpleNamespace(scope="quick-win"),
        status=None, stop_reason="crashed", baseline=SimpleNamespace(stats=stats), current=None, findings=[],
        changes=[{"kind": "set_knob", "description": "workers 2", "status": "kept", "reason": "faster",
                  "params": {"knob": "workers", "value": 2}, "effect": None, "seq": 1}],
        decisions=[], ledger=Ledger(Budget()), noise=noise,
        rt=SimpleNamespace(config={"workers": 2}, load_generator=generator),
        sections={"drift": {"flag": False}})
    result = build_result(run, [])  # type: ignore[arg-type]
    assert {"run_id", "target", "scope", "status", "baseline", "final", "findings", "changes", "goals", "costs",
            "noise_floor"} <= set(result)
    assert result["status"] == "failed" and result["final"] == stats
    assert result["noise_floor"] == {"windows": 3, "regime": "steady", "p95_rel": 0.0412}
    assert result["noise_kept_state"] == {"p95_rel": 0.02, "windows": 2} and result["drift"] == {"flag": False}
    assert result["changes"] == [{"kind": "set_knob", "description": "workers 2", "status": "kept", "reason": "faster",
                                  "params": {"knob": "workers", "value": 2}, "effect": None}]
    assert set(result["costs"]) == {"wall_s", "load_s", "cpu_s", "tokens", "usd"}
    assert result["load_generator"] == {"processes": 2, "cpu_max": 95.0, "saturated_windows": 1}


def test_a_vitals_goal_shows_its_interval_and_page_loads() -> None:
    result = {**result_with_search(), "goals": [
        {"expr": "lcp_ms<=2500", "met": True, "value": 812.5, "ci95": [790.0, 840.0], "loads": 6},
        {"expr": "cls<=0.1", "met": False, "value": None, "loads": 0, "reason": "fewer than 3 page loads measured cls"},
        {"expr": "p95_ms<=50", "met": True, "value": 20.0}]}
    text = render_markdown(result)
    assert "`lcp_ms<=2500`: met (812.5, 95% CI [790, 840] over 6 page loads)" in text
    assert "`cls<=0.1`: not met (None; fewer than 3 page loads measured cls)" in text
    assert "`p95_ms<=50`: met (20.0)" in text
