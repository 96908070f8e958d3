from __future__ import annotations

from tasks.findings import Candidate, Finding
from tasks.search.optimizer import covered_by_kept, knob_candidates, rank_candidates
from tasks.spec import TargetSpec

SPEC = TargetSpec(
    name="t", base_url="http://127.0.0.1:{port}",
    load={"endpoints": [{"name": "a", "path": "/"}]},
    knobs={
        "workers": {"type": "int", "low": 1, "high": 2, "default": 1, "apply": {"env": "W"}},
        "gzip": {"type": "bool", "default": False, "apply": {"env": "GZ"}},
        "cache_ttl_s": {"type": "int", "low": 0, "high": 120, "default": 0,
                        "apply": {"http": {"path": "/admin", "field": "cache_ttl_s"}}},
        "mode": {"type": "choice", "choices": ["a", "b", "c"], "default": "a", "apply": {"env": "M"}},
    },
)


def test_one_step_values_per_knob() -> None:
    got = {(c.params["knob"], c.params["value"]) for c in knob_candidates(SPEC, SPEC.default_config())}
    assert got == {("workers", 2), ("gzip", True), ("cache_ttl_s", 60), ("mode", "b"), ("mode", "c")}
    at_max = knob_candidates(SPEC, {**SPEC.default_config(), "workers": 2})
    assert not [c for c in at_max if c.params["knob"] == "workers"]


def test_findings_raise_the_matching_knob() -> None:
    finding = Finding(agent="application", kind="uncompressed_response", location="/static/app.js",
                      severity="high", evidence={})
    ranked = rank_candidates(knob_candidates(SPEC, SPEC.default_config(), [finding]))
    assert ranked[0].params == {"knob": "gzip", "value": True}


def test_measured_index_outranks_knobs_and_tried_are_skipped() -> None:
    index = Candidate(kind="create_index", params={"table": "orders", "columns": ["customer_id"], "name": "ix"},
                      description="index", risk="low", expected_gain=0.9)
    ranked = rank_candidates([*knob_candidates(SPEC, SPEC.default_config()), index])
    assert ranked[0] is index
    assert index not in rank_candidates([index], tried={index.key()})


def test_a_kept_knob_is_not_proposed_back_to_its_default() -> None:
    changed = {**SPEC.default_config(), "gzip": True, "mode": "b"}
    got = {(c.params["knob"], c.params["value"]) for c in knob_candidates(SPEC, changed)}
    assert ("gzip", False) not in got and ("mode", "a") not in got and ("mode", "c") in got


def test_a_hot_functions_share_of_cpu_sets_the_gain_of_the_knob_it_hints() -> None:
    hot = Finding(agent="application", kind="hot_function", location="auth:verify", severity="high",
                  evidence={}, estimated_gain={"share_of_cpu": 0.7})
    gains = {c.params["knob"]: c.expected_gain for c in knob_candidates(SPEC, SPEC.default_config(), [hot])}
    assert gains["cache_ttl_s"] == 0.7  # above the 0.3 a single hint alone gives
    small = Finding(agent="application", kind="hot_function", location="auth:verify", severity="low",
                    evidence={}, estimated_gain={"share_of_cpu": 0.05})
    assert {c.params["knob"]: c.expected_gain for c in knob_candidates(SPEC, SPEC.default_config(), [small])}[
        "cache_ttl_s"] == 0.3


def _index(table: str, *columns: str) -> Candidate:
    return Candidate("create_index", {"table": table, "columns": list(columns), "name": f"ix_{table}"}, "index")


def test_an_index_led_by_a_kept_wider_index_is_covered() -> None:
    kept = [{"kind": "create_index", "params": {"table": "orders", "columns": ["customer_id", "status"]},
             "status": "kept"}]
    assert covered_by_kept(_index("orders", "customer_id"), kept)
    assert covered_by_kept(_index("orders", "customer_id", "status"), kept)
    assert not covered_by_kept(_index("orders", "status"), kept)  # not a leading prefix
    assert not covered_by_kept(_index("orders", "customer_id", "status", "created_at"), kept)
    assert not covered_by_kept(_index("products", "customer_id"), kept)  # another table
    knob = Candidate("set_knob", {"knob": "workers", "value": 4}, "workers")
    assert not covered_by_kept(knob, kept)
