"""KnobSearch on a synthetic objective: finds the goal's best cheaply, never repeats, honours constraints."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.errors import InputError
from tasks.expressions import parse_expressions
from tasks.search.choice import Point, choose_point, quality_constraints
from tasks.search.knob_search import KnobSearch
from tasks.search.space import grid_configs, search_space, space_size
from tasks.spec import TargetSpec

SEEDS = (0, 1, 2)
WITHIN = 1.05
MODE_FACTOR = {"a": 1.0, "b": 0.8, "c": 0.6}


def make_spec(**extra: Any) -> TargetSpec:
    return TargetSpec.model_validate({
        "name": "synthetic", "base_url": "http://127.0.0.1:{port}",
        "load": {"endpoints": [{"name": "x", "path": "/x"}]},
        "knobs": {
            "workers": {"type": "int", "low": 1, "high": 4, "default": 1, "apply": {"env": "W"}},
            "cache_ttl_s": {"type": "int", "low": 0, "high": 120, "default": 0,
                            "apply": {"http": {"path": "/admin", "field": "cache_ttl_s"}}},
            "gzip": {"type": "bool", "default": False, "apply": {"env": "G"}},
            "mode": {"type": "choice", "choices": ["a", "b", "c"], "default": "a", "apply": {"env": "M"}},
        },
        "cost": {"usd_per_worker_hour": 0.05},
        **extra,
    })


def measure(config: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """The synthetic target: (objectives, constraints). mode c with a cache serves stale data."""
    p95 = 100.0 / config["workers"] ** 0.8
    p95 *= (0.5 if config["cache_ttl_s"] else 1.0) * (0.9 if config["cache_ttl_s"] == 120 else 1.0)
    p95 *= (0.95 if config["gzip"] else 1.0) * MODE_FACTOR[config["mode"]]
    stale = config["mode"] == "c" and config["cache_ttl_s"] > 0
    return {"p95_ms": p95, "usd_per_hour": 0.05 * config["workers"]}, {"responses": 1.0 if stale else 0.0}


GOALS = parse_expressions(["p95_ms<=30"])


def grid_best(spec: TargetSpec) -> Point:
    search = KnobSearch(spec)
    points = [Point(c, *measure(c)) for c in grid_configs(search.space)]
    best = choose_point(points, GOALS, [], None, search.objectives)
    assert best is not None
    return best


def within(point_config: dict[str, Any], best: Point) -> bool:
    objectives, constraints = measure(point_config)
    return (all(v <= 0 for v in constraints.values())
            and objectives["usd_per_hour"] <= best.objectives["usd_per_hour"] * WITHIN
            and objectives["p95_ms"] <= best.objectives["p95_ms"] * WITHIN)


def run_search(spec: TargetSpec, seed: int, windows: int, sampler: str = "tpe") -> tuple[KnobSearch, list[dict[str, Any]], int | None]:
    """Measure the default config, then suggested ones; the window count when choose() first got within 5%."""
    search = KnobSearch(spec, seed=seed, sampler=sampler)
    best = grid_best(spec)
    asked: list[dict[str, Any]] = []
    reached = None
    config: dict[str, Any] | None = spec.default_config()
    for n in range(1, windows + 1):
        assert config is not None
        asked.append(config)
        search.tell(config, *measure(config))
        if n == 1 and sampler != "random":
            search.screen_around(config)
        chosen = search.choose(GOALS)
        if reached is None and chosen is not None and within(chosen, best):
            reached = n
        config = search.suggest()
    return search, asked, reached


def test_space_cuts_wide_int_ranges_into_levels_and_keeps_small_ones() -> None:
    space = search_space(make_spec())
    assert space_size(space) == 4 * 3 * 2 * 3
    configs = grid_configs(space)
    assert {c["cache_ttl_s"] for c in configs} == {0, 60, 120}
    assert {c["workers"] for c in configs} == {1, 2, 3, 4}
    assert {type(c["gzip"]) for c in configs} == {bool}
    assert space_size(search_space(make_spec(), {"cache_ttl_s": [0, 30, 120]})) == 72
    with pytest.raises(InputError, match="unknown knob"):
        search_space(make_spec(), {"nope": [1]})


@pytest.mark.parametrize("seed", SEEDS)
def test_search_gets_within_5_percent_of_the_grid_best_in_a_third_of_its_windows(seed: int) -> None:
    spec = make_spec()
    budget = space_size(search_space(spec)) // 3
    _, asked, reached = run_search(spec, seed, budget)
    assert reached is not None and reached <= budget, f"seed {seed}: not within 5 % after {budget} windows"
    keys = [tuple(sorted(c.items())) for c in asked]
    assert len(set(keys)) == len(keys)  # never measured twice


def test_search_never_repeats_and_stops_when_the_space_is_exhausted() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=3, levels={"workers": [1, 2], "mode": ["a", "b"]})  # 2*3*2*2 = 24
    seen = []
    while (config := search.suggest()) is not None:
        assert not search.seen(config)
        seen.append(tuple(sorted(config.items())))
        search.tell(config, *measure(config))
        assert search.seen(config)
    assert len(seen) == len(set(seen)) == 24


def test_infeasible_points_are_never_chosen_nor_on_the_front() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    for config in grid_configs(search.space):  # everything measured, the trap included
        search.tell(config, *measure(config))
    front = search.front()
    assert front and all(p.feasible for p in front)
    assert not any(p.config["mode"] == "c" and p.config["cache_ttl_s"] > 0 for p in front)
    # without the constraint, the stale cache (mode c + cache) would win on p95
    fastest = min(search.measured(), key=lambda p: p.objectives["p95_ms"])
    assert fastest.config["mode"] == "c" and fastest.config["cache_ttl_s"] > 0
    chosen = search.choose(parse_expressions(["p95_ms<=1"]))  # unreachable goal: the closest feasible point
    assert chosen is not None and not (chosen["mode"] == "c" and chosen["cache_ttl_s"] > 0)


def test_pareto_has_the_contract_shape_and_marks_the_chosen_point() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    for config in grid_configs(search.space):
        search.tell(config, *measure(config))
    assert all(not row["chosen"] for row in search.pareto())
    chosen = search.choose(GOALS)
    rows = search.pareto()
    assert [r["chosen"] for r in rows].count(True) == 1
    for row in rows:
        assert set(row) == {"config", "objectives", "chosen"}
        assert set(row["config"]) == set(spec.knobs) and set(row["objectives"]) == {"p95_ms", "usd_per_hour"}
    assert next(r for r in rows if r["chosen"])["config"] == chosen
    costs = [r["objectives"]["usd_per_hour"] for r in rows]
    p95s = [r["objectives"]["p95_ms"] for r in rows]
    assert costs == sorted(costs) and p95s == sorted(p95s, reverse=True)  # a front: dearer is faster
    assert len(rows) == 4  # one point per worker count


def test_choose_follows_the_goals() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    for config in grid_configs(search.space):
        search.tell(config, *measure(config))
    # p95<=30: the cheapest config meeting it (2 workers), the fastest of those
    assert search.choose(GOALS) == {"workers": 2, "cache_ttl_s": 120, "gzip": True, "mode": "b"}
    # a looser goal: one worker suffices
    assert search.choose(parse_expressions(["p95_ms<=40"]))["workers"] == 1
    # an unreachable goal: the closest point (the fastest feasible), whatever it costs
    assert search.choose(parse_expressions(["p95_ms<=1"])) == {"workers": 4, "cache_ttl_s": 120, "gzip": True, "mode": "b"}
    # two goals, cost and latency: 2 workers meet both
    assert search.choose(parse_expressions(["usd_per_hour<=0.1", "p95_ms<=30"]))["workers"] == 2
    # no goals: the knee of the front, neither extreme
    knee = search.choose([])
    assert knee is not None and knee["workers"] in (2, 3)


def test_choose_honours_the_degradation_margins() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    baseline = {"total": {"p99_ms": 50.0}, "endpoints": {}}
    for config in grid_configs(search.space):
        objectives, constraints = measure(config)
        p99 = 80.0 if config["gzip"] else 45.0  # gzip worsens the tail here
        search.tell(config, objectives, constraints, stats={"total": {"p99_ms": p99}, "endpoints": {}})
    margins = parse_expressions(["p99_ms<=1.1*baseline"])
    chosen = search.choose(GOALS, margins, baseline)
    assert chosen == {"workers": 2, "cache_ttl_s": 120, "gzip": False, "mode": "b"}


def test_goal_on_an_endpoint_uses_the_window_stats() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    cheap = {"workers": 1, "cache_ttl_s": 0, "gzip": False, "mode": "a"}
    dear = {"workers": 2, "cache_ttl_s": 0, "gzip": False, "mode": "a"}
    search.tell(cheap, {"p95_ms": 20, "usd_per_hour": 0.05}, True, stats={"endpoints": {"orders": {"p95_ms": 300}}, "total": {}})
    search.tell(dear, {"p95_ms": 25, "usd_per_hour": 0.10}, True, stats={"endpoints": {"orders": {"p95_ms": 90}}, "total": {}})
    assert search.choose(parse_expressions(["p95_ms[orders]<=100"])) == dear
    assert [r["config"] for r in search.pareto()][-1] == dear  # listed although dominated, as chosen


def test_history_seeds_the_study_and_is_not_measured_again() -> None:
    spec = make_spec()
    configs = grid_configs(search_space(spec))
    rows = [{"config": c, "objectives": measure(c)[0], "constraints": measure(c)[1]} for c in configs[:10]]
    rows.append({"config": {**configs[0], "cache_ttl_s": 45}, "objectives": {"p95_ms": 1, "usd_per_hour": 0}})  # off-grid
    rows.append({"config": configs[11], "objectives": {"p95_ms": 1}})  # lacks an objective
    search = KnobSearch(spec, seed=0)
    assert search.from_history(rows) == 10
    assert len(search.study.trials) == 10 and all(search.seen(c) for c in configs[:10])
    for _ in range(20):
        config = search.suggest()
        assert config is not None and config not in configs[:10]
        search.tell(config, *measure(config))
    assert {p.source for p in search.measured()} == {"history", "measured"}


def test_discarded_suggestion_may_come_back_and_forget_allows_a_remeasure() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0, levels={"workers": [1], "cache_ttl_s": [0], "mode": ["a"]})  # 2 configs
    first = search.suggest()
    search.discard(first)
    assert not search.seen(first)
    second = search.suggest()
    search.tell(second, *measure(second))
    third = search.suggest()
    search.tell(third, *measure(third))
    assert {second["gzip"], third["gzip"]} == {False, True}
    assert search.suggest() is None
    search.forget(second)
    assert search.suggest() == second


def test_quality_constraints_are_relative_violations() -> None:
    quality = parse_expressions(["error_rate<=0.01", "p99_ms<=1.1*baseline", "rps>=100", "responses==baseline"])
    stats = {"total": {"error_rate": 0.02, "p99_ms": 100.0, "rps": 120.0}, "endpoints": {}}
    out = quality_constraints(quality, stats, {"total": {"p99_ms": 100.0}}, responses_ok=False)
    assert out["error_rate<=0.01"] == pytest.approx(1.0)
    assert out["p99_ms<=1.1*baseline"] == 0.0 and out["rps>=100"] == 0.0
    assert out["responses==baseline"] > 0
    assert quality_constraints(quality[:1], {"total": {}}, None) == {"error_rate<=0.01": 1.0}  # unmeasured


def test_other_samplers_and_bad_input() -> None:
    spec = make_spec()
    for sampler in ("nsga2", "random"):
        search = KnobSearch(spec, seed=0, sampler=sampler)
        for _ in range(8):
            config = search.suggest()
            search.tell(config, *measure(config))
        assert len(search.measured()) == 8
    rps_search = KnobSearch(spec, objectives=["p95_ms", "rps"])
    assert [d.name for d in rps_search.study.directions] == ["MINIMIZE", "MAXIMIZE"]
    with pytest.raises(InputError, match="objective"):
        KnobSearch(spec, objectives=["latency"])
    with pytest.raises(InputError, match="sampler"):
        KnobSearch(spec, sampler="grid")
    with pytest.raises(InputError, match="lacks objective"):
        KnobSearch(spec).tell(spec.default_config(), {"p95_ms": 1.0})


def test_history_rows_read_earlier_search_windows_from_the_store(store: Any) -> None:
    import polars as pl

    from tasks.analysis.stats import endpoint_stats_frame
    from tasks.search.history import history_rows
    from tasks.store import now

    spec = make_spec()
    configs = grid_configs(search_space(spec))[:4]
    for run_id, version in (("r1", "abc"), ("r2", "old")):
        store.insert_row("runs", {"run_id": run_id, "target": spec.name, "code_version": version, "started_at": now()})
    samples = pl.DataFrame({"ts": [0.0, 0.5, 1.0], "endpoint": ["x", "x", "y"], "method": ["GET"] * 3,
                            "latency_ms": [10.0, 20.0, 30.0], "status": [200] * 3, "bytes": [1] * 3,
                            "error": [None, None, None]}, schema_overrides={"status": pl.Int32, "error": pl.Utf8})
    layout = [("w1", "r1", "search-1", True, configs[0]), ("w2", "r1", "search-2", True, configs[1]),
              ("w3", "r1", "search-3", False, configs[2]),  # rejected by the gate
              ("w4", "r1", "baseline-a", True, configs[3]),  # not a search window
              ("w5", "r2", "search-1", True, configs[3])]  # another code version
    for window_id, run_id, label, valid, config in layout:
        store.insert_row("windows", {"window_id": window_id, "run_id": run_id, "label": label, "config": config,
                                     "valid": valid, "started_at": now()})
        store.insert_frame("endpoint_stats", endpoint_stats_frame(samples, 1.0, window_id))
    store.insert_row("validations", {"window_id": "w2", "expectation": "responses==baseline", "success": False})
    quality = parse_expressions(["error_rate<=0.01", "responses==baseline"])
    rows = history_rows(store, spec, "abc", quality, None)
    assert [r["config"] for r in rows] == configs[:2]
    assert rows[0]["objectives"]["p95_ms"] == pytest.approx(29.0) and rows[0]["objectives"]["usd_per_hour"] == 0.05
    assert set(rows[0]["stats"]["endpoints"]) == {"x", "y"}
    assert rows[0]["constraints"] == {"error_rate<=0.01": 0.0}
    assert rows[1]["constraints"]["responses==baseline"] > 0  # served different responses: infeasible
    search = KnobSearch(spec)
    assert search.from_history(rows) == 2
    assert [p.feasible for p in search.measured()] == [True, False]


def test_choose_counts_shortfalls_within_the_noise_floor_as_equal_and_takes_the_cheaper() -> None:
    spec = make_spec()
    search = KnobSearch(spec)
    cheap = {"workers": 1, "cache_ttl_s": 60, "gzip": False, "mode": "a"}
    dear = {"workers": 2, "cache_ttl_s": 60, "gzip": False, "mode": "a"}
    far = {"workers": 1, "cache_ttl_s": 0, "gzip": False, "mode": "a"}
    search.tell(cheap, {"p95_ms": 10.55, "usd_per_hour": 0.05})
    search.tell(dear, {"p95_ms": 10.17, "usd_per_hour": 0.10})
    search.tell(far, {"p95_ms": 15.0, "usd_per_hour": 0.05})
    goal = parse_expressions(["p95_ms<=10"])  # met by none
    assert search.choose(goal) == dear  # strictly the smallest shortfall
    assert search.choose(goal, noise_rel=0.05) == cheap  # 4 % apart: within noise, so the cheaper
    assert search.choose(goal, noise_rel=0.01) == dear


def test_history_rows_keep_windows_rejected_only_for_their_errors(store: Any) -> None:
    import polars as pl

    from tasks.analysis.stats import endpoint_stats_frame
    from tasks.search.history import history_rows
    from tasks.store import now

    spec = make_spec()
    configs = grid_configs(search_space(spec))[:3]
    store.insert_row("runs", {"run_id": "r1", "target": spec.name, "code_version": "abc", "started_at": now()})
    samples = pl.DataFrame({"ts": [0.0, 0.5, 1.0, 1.5], "endpoint": ["x"] * 4, "method": ["GET"] * 4,
                            "latency_ms": [10.0, 20.0, 30.0, 40.0], "status": [200, 200, 200, 500],
                            "bytes": [1] * 4, "error": [None, None, None, "500"]},
                           schema_overrides={"status": pl.Int32, "error": pl.Utf8})
    failed = {"w1": ["error_rate_within_threshold"],  # the configuration's own errors: a measurement
              "w2": ["error_rate_within_threshold", "loadgen_not_saturated"],  # a bad measurement
              "w3": ["error_rate_within_threshold", "responses==baseline"]}  # errors, and wrong answers
    for (window_id, rules), config in zip(failed.items(), configs, strict=True):
        store.insert_row("windows", {"window_id": window_id, "run_id": "r1", "label": f"search-k-{window_id}",
                                     "config": config, "valid": False, "started_at": now()})
        store.insert_frame("endpoint_stats", endpoint_stats_frame(samples, 2.0, window_id))
        for rule in ("enough_samples", "error_rate_within_threshold", "loadgen_not_saturated", "responses==baseline"):
            store.insert_row("validations", {"window_id": window_id, "expectation": rule, "success": rule not in rules})
    rows = history_rows(store, spec, "abc", parse_expressions(["error_rate<=0.01"]), None, label_prefix="search-k-")
    assert [r["config"] for r in rows] == [configs[0], configs[2]]
    assert all(r["constraints"]["error_rate<=0.01"] > 0 for r in rows)  # infeasible under this run's threshold
    assert history_rows(store, spec, "abc", [], None, label_prefix="search-other-") == []


def test_screening_moves_one_knob_at_a_time_then_combines_the_moves_that_helped() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0)
    origin = spec.default_config()
    search.tell(origin, *measure(origin))
    moves = search.screen_around(origin)
    changed = [{k: v for k, v in m.items() if origin[k] != v} for m in moves]
    assert changed == [{"workers": 4}, {"cache_ttl_s": 120}, {"gzip": True}, {"mode": "b"}, {"mode": "c"}]
    search.tell(moves[1], *measure(moves[1]))  # known already (say from history): not measured again
    suggested = []
    for _ in range(4):
        config = search.suggest()
        suggested.append(config)
        search.tell(config, *measure(config))
    assert suggested == [moves[0], moves[2], moves[3], moves[4]]
    # workers=4 is faster but costs 4x (not a dominating move); of the modes, c is the better one
    assert search.suggest() == {**origin, "cache_ttl_s": 120, "gzip": True, "mode": "c"}


def test_screening_with_one_helpful_knob_moves_the_others_again_from_there_then_hands_over() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0, levels={"workers": [1, 2], "cache_ttl_s": [0, 60], "mode": ["a", "c"]})
    origin = {**spec.default_config(), "cache_ttl_s": 60}
    search.tell(origin, *measure(origin))
    moves = search.screen_around(origin)
    for config in moves:
        assert search.suggest() == config
        objectives, constraints = measure(config)
        # only gzip helps: mode c serves stale data with the cache, no cache is slower, workers cost more
        search.tell(config, objectives, constraints)
    assert search.combination() is None
    # from the gzip point, the other moves again: not the costlier workers, not the infeasible mode c
    assert search.follow_up() == [{**origin, "gzip": True, "cache_ttl_s": 0}]
    again = search.suggest()
    assert again == {**origin, "gzip": True, "cache_ttl_s": 0}
    search.tell(again, *measure(again))
    rest = search.suggest()
    assert rest is not None and not search.seen(rest) and rest not in moves


def test_screening_without_a_helpful_move_hands_over_to_the_sampler() -> None:
    spec = make_spec()
    search = KnobSearch(spec, seed=0, levels={"workers": [1, 2], "cache_ttl_s": [0, 60], "mode": ["a", "c"]})
    origin = {**spec.default_config(), "cache_ttl_s": 60, "gzip": True}
    search.tell(origin, *measure(origin))
    moves = search.screen_around(origin)
    for config in moves:
        assert search.suggest() == config
        search.tell(config, *measure(config))  # each move is slower, costlier or stale
    assert search.follow_up() == []
    rest = search.suggest()
    assert rest is not None and not search.seen(rest) and rest not in moves
