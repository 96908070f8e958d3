"""The reports: the Pareto front against every measured point; the HTML report of a recorded run
(before/after per endpoint, the decision timeline, findings as sentences, costs), self-contained."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.results.report import pareto_rows, render_html, render_markdown
from tasks.results.tables import fmt

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


# --- the HTML report of a recorded run (a real `make run`: 4 changes tried, 25 findings) ----------

RECORDED = Path(__file__).parent / "data" / "ecommerce_run.json"
EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "report-example.html"


def recorded() -> dict:
    return json.loads(RECORDED.read_text())


def section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start:end if end > 0 else len(page)]


def test_the_report_draws_before_and_after_for_every_endpoint() -> None:
    result = recorded()
    part = section(render_html(result), "Before / after per endpoint")
    svg = part[part.index("<svg"):part.index("</svg>")]
    for name, before in result["baseline"]["endpoints"].items():
        after = result["final"]["endpoints"][name]
        for q in ("p50", "p95", "p99"):
            tip = f"{name} {q}: {fmt(before[q + '_ms'])} ms before, {fmt(after[q + '_ms'])} ms after"
            assert tip in svg, tip
    rows = len(result["baseline"]["endpoints"]) + 1  # and the total
    assert svg.count("<circle") == rows * 3 * 2 and svg.count("<rect") == rows * 2  # p50/p95/p99 pairs, rps bars
    # customer_orders got faster at every quantile: its after-dots are green
    assert svg.count('fill="#c62828"') < svg.count('fill="#2e7d32"')


def test_the_timeline_draws_each_change_with_its_interval_noise_band_and_boundary() -> None:
    result = recorded()
    part = section(render_html(result), "Decision timeline")
    svg = part[part.index("<svg"):part.index("</svg>")]
    for i, change in enumerate(result["changes"], 1):
        e = change["effect"]
        assert f"{i}. {change['status']}</tspan>" in svg
        assert f"{e['metric']} on {e['endpoint']}: x{e['ratio']:.3g}, 95% CI [{e['ci95'][0]:.3g}, {e['ci95'][1]:.3g}]" in svg
    assert svg.count("noise of one window: ±15.7%") == 4  # the median's noise floor, each change judged on p50
    assert svg.count('stroke-dasharray="3,2"') == 4  # the keep boundary in every row
    assert svg.count("p95 on ") == 2  # the two trials that measured the tail guard
    assert "customer_orders: faster; 1 window, 1 look" in svg
    assert "total: undecided; 5 windows, 3 looks" in svg
    kept = [m.start() for m in re.finditer(r'<circle [^>]*r="4.5" fill="#2e7d32"', svg)]
    assert len(kept) == sum(1 for c in result["changes"] if c["status"] == "kept")


def test_findings_are_sentences_not_json() -> None:
    part = section(render_html(recorded()), "Findings")
    assert part.count("<li>") == 25 and '{"' not in part and "{&quot;" not in part
    assert ("2 statements read orders.customer_id without an index on customer_orders: 282 calls, mean 53.5 ms, "
            "29% of the database time. On a copy of the database an index cut them from 42.4 to 0.0254 ms per call.") in part
    assert "runs “SELECT name FROM customers WHERE id = ?” 50 times per request (median, up to 50) on product_page" in part
    assert "/static/app.js blocks the first render of /, /products/1: 33.3 ms to fetch here, about 1421 ms" in part
    assert "/static/app.css is sent uncompressed (191668 bytes; gzip makes it 29337) on /." in part
    assert "The target kept its usable CPU 100% busy on average" in part


def test_costs_are_a_table() -> None:
    part = section(render_html(recorded()), "Costs")
    cells = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>", part)
    assert ("wall clock", "561.7 s") in cells and ("load generated", "508.0 s") in cells
    assert ("CPU of the target and the load generator", "291.7 s") in cells
    assert ("LLM tokens", "0") in cells and ("LLM cost", "0 USD") in cells
    assert ("serving cost, after", "0.116 USD per million requests") in cells
    assert "9 min 22 s" in part


def test_the_report_is_self_contained() -> None:
    """...and the README's example (docs/report-example.html) is this page, rendered again here."""
    page = render_html(recorded())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    EXAMPLE.write_text(page, encoding="utf-8")


def test_a_failed_change_and_missing_evidence_still_render() -> None:
    result = recorded()
    result["changes"].append({"kind": "set_knob", "description": "set knob workers = 2", "status": "failed",
                              "reason": "restart timed out", "params": {}, "effect": None})
    result["findings"].append({"agent": "database", "kind": "missing_index", "location": "t.c", "severity": "low",
                               "evidence": {"calls": 3}, "estimated_gain": {}, "endpoint": None})
    page = render_html(result)
    assert "5. failed</tspan>" in page and "no measurement: restart timed out" in page
    assert "The database agent found missing index at t.c (calls 3)." in page


def test_postgres_evidence_reads_as_the_planner_s_estimate() -> None:
    from tasks.results.sentences import finding_sentence

    index = {"agent": "database", "kind": "missing_index", "location": "invoices.issued_on", "severity": "high",
             "endpoint": "revenue_report", "evidence": {
                 "statements": ["SELECT ..."], "calls": 60, "mean_ms": 18.7, "db_time_share": 0.231,
                 "whatif": {"method": "hypopg", "cost_before": 1879.0, "cost_after": 24.6, "ratio": 76.4}}}
    assert finding_sentence(index) == (
        "1 statement read invoices.issued_on without an index on revenue_report: 60 calls, mean 18.7 ms, 23% of the "
        "database time. With a hypothetical index the planner's cost fell from 1879 to 24.6 (an estimate, not a timing).")
    query = {"agent": "database", "kind": "slow_query", "location": "accounts,invoices", "severity": "medium",
             "endpoint": "export", "evidence": {"statement": "SELECT 1", "calls": 15, "mean_ms": 12.1, "share": 0.08}}
    assert finding_sentence(query) == "“SELECT 1” took 8% of the database time on export: 15 calls, mean 12.1 ms."


def test_the_markdown_lists_the_costs_as_a_table_with_the_advisor_s() -> None:
    result = {**recorded(), "llm": {"calls": 3, "cache_hits": 1, "tokens_in": 667, "tokens_out": 265, "usd": 0.002}}
    result["costs"] = {**result["costs"], "tokens": 932, "usd": 0.002}
    result["changes"] = [*result["changes"], {"kind": "code_patch", "description": "patch", "status": "kept",
                                              "reason": "", "params": {}, "effect": None}]
    text = render_markdown(result)
    assert "| wall clock | 561.7 s | 9 min 22 s |" in text and "| LLM cost | 0.002 USD |  |" in text
    assert "| LLM calls | 3 | 1 cache hit(s); tokens 667 in, 265 out; USD per kept patch 0.002000 |" in text
    page = section(render_html(result), "Costs")
    assert "USD per kept patch 0.002000" in page
