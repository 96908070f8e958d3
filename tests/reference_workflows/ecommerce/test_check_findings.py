"""The planted-bottleneck checker: found, missing, and false findings ranked above planted ones."""

from __future__ import annotations

import json
from pathlib import Path

from reference_workflows.ecommerce.check_findings import check_findings, main

EXPECTED = {
    "planted": [
        {"id": "index", "kind": "missing_index", "location": r"orders\.customer_id", "endpoint": "customer_orders"},
        {"id": "n+1", "kind": "n_plus_one", "location": r"shop\.catalog:reviews"},
    ],
    "also_true": [{"kind": "slow_query", "location": "orders"}],
}


def f(kind: str, location: str, endpoint: str | None = None) -> dict:
    return {"kind": kind, "location": location, "endpoint": endpoint, "severity": "high"}


def test_all_planted_found_and_false_ones_only_below() -> None:
    ranked = [f("missing_index", "orders.customer_id", "customer_orders"), f("slow_query", "orders"),
              f("n_plus_one", "shop.catalog:reviews", "product"), f("memory_growth", "target:shop")]
    check = check_findings(ranked, EXPECTED)
    assert check.ok and check.found == {"index": 0, "n+1": 2} and [r for r, _ in check.false] == [3]


def test_a_missing_planted_one_a_wrong_endpoint_and_a_false_one_above_fail() -> None:
    ranked = [f("memory_growth", "target:shop"), f("missing_index", "orders.customer_id", "catalog"),
              f("n_plus_one", "shop.catalog:reviews")]
    check = check_findings(ranked, EXPECTED)
    assert check.missing == ["index"]  # right table, wrong endpoint
    assert [r for r, _ in check.false_above] == [0, 1] and not check.ok


def test_cli_exit_codes(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([str(bad)]) == 2
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"findings": [f("missing_index", "orders.customer_id", "customer_orders")]}))
    assert main([str(result)]) == 1  # the real expected file plants more than this
    assert "MISSING" in capsys.readouterr().out
