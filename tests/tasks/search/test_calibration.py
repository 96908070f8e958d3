"""The calibration learned from history: optimistic kinds rank lower, no history changes nothing,
and the uncertainty of a kind shrinks as its observations come in."""

from __future__ import annotations

import math

import pytest

from tasks.findings import Candidate, Finding
from tasks.search.calibration import (
    PRIOR_SD,
    Calibration,
    Observation,
    fit_calibration,
    learning_kind,
    observation,
)
from tasks.search.optimizer import candidates_from_findings, knob_candidates, rank_candidates, score
from tasks.spec import TargetSpec

SPEC = TargetSpec(
    name="t", base_url="http://127.0.0.1:{port}", load={"endpoints": [{"name": "a", "path": "/"}]},
    knobs={"workers": {"type": "int", "low": 1, "high": 2, "default": 1, "apply": {"env": "W"}},
           "gzip": {"type": "bool", "default": False, "apply": {"env": "GZ"}}},
)

INDEX = Candidate("create_index", {"table": "orders", "columns": ["status"], "name": "ix"}, "index on status",
                  expected_gain=0.8, basis="missing_index")
KNOB = Candidate("set_knob", {"knob": "workers", "value": 2}, "workers 2", expected_gain=0.5, basis="cpu_saturation")
INDEX_KIND, KNOB_KIND = learning_kind("create_index", "missing_index"), learning_kind("set_knob", "cpu_saturation")


def measured(kind: str, run: int, gain: float, ratio: float, half_width: float = 0.05) -> Observation:
    obs = observation(kind, f"run-{run}", gain, "p50_ms", ratio, ratio * (1 - half_width), ratio * (1 + half_width))
    assert obs is not None
    return obs


def test_without_history_the_ranking_is_the_estimates_own() -> None:
    finding = Finding("application", "cpu_saturation", "target", "high", {}, {"share_of_cpu": 0.4})
    candidates = [INDEX, KNOB, *knob_candidates(SPEC, SPEC.default_config(), [finding])]
    empty = fit_calibration([])
    assert empty.kinds == {} and empty.observations == 0
    assert rank_candidates(candidates, calibration=empty) == rank_candidates(candidates)
    assert [score(c, empty) for c in candidates] == [score(c) for c in candidates]


def test_an_optimistic_kind_ranks_lower_once_its_history_says_so() -> None:
    assert rank_candidates([INDEX, KNOB])[0] is INDEX  # 0.8 promised against 0.5
    # four runs: the indexes' what-ifs promised 0.8 and delivered 10 %; the knob delivered its 50 %
    history = [measured(INDEX_KIND, i, 0.8, 0.9) for i in range(4)] + [measured(KNOB_KIND, i, 0.5, 0.5) for i in range(4)]
    calibration = fit_calibration(history)
    assert rank_candidates([INDEX, KNOB], calibration=calibration)[0] is KNOB
    index_fit, knob_fit = calibration.kinds[INDEX_KIND], calibration.kinds[KNOB_KIND]
    assert index_fit.mean < 0.2 and knob_fit.mean == pytest.approx(1.0, abs=0.05)
    assert calibration.calibrated_gain(INDEX) == pytest.approx(0.1, abs=0.05)
    # a kind the history has never seen keeps its estimate
    patch = Candidate("code_patch", {"location": "a:b"}, "patch", expected_gain=0.3, basis="n_plus_one")
    assert calibration.calibrated_gain(patch) == 0.3


def test_a_kind_that_made_things_slower_ranks_after_every_kind_that_delivered() -> None:
    calibration = fit_calibration([measured(INDEX_KIND, i, 0.8, 1.1) for i in range(3)])
    assert calibration.kinds[INDEX_KIND].mean < 0
    assert calibration.calibrated_gain(INDEX) < 0
    tiny = Candidate("set_knob", {"knob": "gzip", "value": True}, "gzip", expected_gain=0.05)
    assert rank_candidates([INDEX, tiny], calibration=calibration)[0] is tiny


def test_uncertainty_shrinks_with_more_observations() -> None:
    sds = [fit_calibration([measured(INDEX_KIND, i, 0.8, 0.5) for i in range(n)]).kinds[INDEX_KIND].sd
           for n in (1, 2, 4, 8)]
    assert sds[0] < PRIOR_SD
    assert sds == sorted(sds, reverse=True) and sds[-1] < sds[0] / 2
    # a wider measured interval teaches less
    narrow = fit_calibration([measured(INDEX_KIND, 0, 0.8, 0.5, 0.02)]).kinds[INDEX_KIND]
    wide = fit_calibration([measured(INDEX_KIND, 0, 0.8, 0.5, 0.6)]).kinds[INDEX_KIND]
    assert wide.sd > narrow.sd and abs(wide.mean - 1) < abs(narrow.mean - 1)
    lo, hi = narrow.interval(0.8)
    assert lo < narrow.gain(0.8) < hi


def test_observations_need_an_interval_and_an_estimate_and_read_throughput_inverted() -> None:
    assert observation(INDEX_KIND, "r", 0.8, "p50_ms", 0.5, None, None) is None
    assert observation(INDEX_KIND, "r", 0.0, "p50_ms", 0.5, 0.4, 0.6) is None  # nothing was promised
    assert observation(INDEX_KIND, "r", 0.8, "p50_ms", None, 0.4, 0.6) is None
    latency = observation(KNOB_KIND, "r", 0.5, "p50_ms", 0.5, 0.45, 0.55)
    throughput = observation(KNOB_KIND, "r", 0.5, "rps", 2.0, 1.8, 2.2)
    assert latency is not None and throughput is not None
    assert latency.share == pytest.approx(1.0) and throughput.share == pytest.approx(1.0)
    assert latency.se == pytest.approx((math.log(0.55) - math.log(0.45)) / (2 * 1.959964))


def test_findings_candidates_carry_the_finding_kind_their_estimate_rests_on() -> None:
    finding = Finding("database", "missing_index", "orders.status", "high", {}, {"ratio": 40.0},
                      candidate=Candidate("create_index", {"table": "orders"}, "ix", expected_gain=0.97))
    (cand,) = candidates_from_findings([finding])
    assert cand.basis == "missing_index" and cand.key() == finding.candidate.key()  # type: ignore[union-attr]
    hot = Finding("application", "cpu_saturation", "target", "high", {}, {"share_of_cpu": 0.6})
    workers = next(c for c in knob_candidates(SPEC, SPEC.default_config(), [hot]) if c.params["knob"] == "workers")
    gzip = next(c for c in knob_candidates(SPEC, SPEC.default_config(), [hot]) if c.params["knob"] == "gzip")
    assert (workers.basis, workers.expected_gain) == ("cpu_saturation", 0.6)
    assert gzip.basis == ""
    assert isinstance(Calibration(), Calibration) and Calibration().calibrated_gain(workers) == 0.6
