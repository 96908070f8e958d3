"""The state key in search window labels, and the pooled comparison that confirms the search's choice."""

from __future__ import annotations

import math
import re

import numpy as np
import polars as pl

from tasks.refine import judge_choice, state_key
from tasks.spec import LoadSpec

LOAD = LoadSpec(endpoints=[{"name": "x", "path": "/x"}], duration_s=3)
INDEX_A = {"kind": "create_index", "params": {"table": "orders", "columns": ["customer_id"]}, "description": "a"}
INDEX_B = {"kind": "create_index", "params": {"table": "items", "columns": ["sku"]}, "description": "b"}
KNOB = {"kind": "set_config", "params": {"config": {"workers": 2}}, "description": "knobs"}


def test_state_key_follows_kept_schema_changes_and_load_shape_not_knobs_or_order() -> None:
    empty = state_key([], LOAD)
    assert re.fullmatch(r"[0-9a-f]{8}", empty)
    assert state_key([KNOB], LOAD) == empty  # knob values are in every window's config already
    with_a = state_key([INDEX_A], LOAD)
    assert with_a != empty
    assert state_key([INDEX_A, INDEX_B], LOAD) == state_key([INDEX_B, {**INDEX_A, "description": "other"}], LOAD)
    assert state_key([INDEX_A, INDEX_B], LOAD) != with_a
    assert state_key([INDEX_A], LOAD.model_copy(update={"users": 40})) != with_a  # measured another way


def window(median_ms: float, seed: int, n: int = 2000) -> pl.DataFrame:
    latencies = np.random.default_rng(seed).lognormal(np.log(median_ms), 0.5, n)
    return pl.DataFrame({"endpoint": ["x"] * n, "latency_ms": latencies, "ts": np.arange(n) / 100.0})


def test_more_windows_of_the_choice_narrow_the_interval() -> None:
    """On average over draws: one pair of arms can widen by chance (a few windows estimate the
    between-window spread poorly, and the t correction widens it)."""
    width = lambda e: math.log(e["ci95"][1] / e["ci95"][0])  # noqa: E731
    widths_one, widths_two = [], []
    for base in range(0, 50, 10):
        kept = [window(10.0, base + seed) for seed in range(3)]
        _, _, _, one = judge_choice(kept, [window(8.0, base + 5)])
        _, _, _, two = judge_choice(kept, [window(8.0, base + 5), window(8.0, base + 6)])
        assert one["windows"] == {"before": 3, "after": 1} and two["windows"]["after"] == 2
        assert 0.7 < two["ratio"] < 0.9
        widths_one.append(width(one))
        widths_two.append(width(two))
    assert sum(widths_two) < sum(widths_one)


def mixed(medians: dict[str, float], counts: dict[str, int], seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [pl.DataFrame({"endpoint": [name] * counts[name],
                           "latency_ms": rng.lognormal(np.log(median), 0.6, counts[name])})
             for name, median in medians.items()]
    frame = pl.concat(parts)
    return frame.with_columns(ts=pl.Series(np.sort(rng.uniform(0, 20, frame.height))))


COUNTS = {"catalog": 150, "checkout": 2000}


def test_a_choice_that_speeds_one_endpoint_and_slows_none_is_kept_when_the_total_cannot_tell() -> None:
    kept = [mixed({"catalog": 8.0, "checkout": 5.0}, COUNTS, seed) for seed in range(3)]
    cached = [mixed({"catalog": 1.0, "checkout": 5.0}, COUNTS, 10)]
    keep, settled, reason, effect = judge_choice(kept, cached)
    assert keep and settled
    assert effect["endpoint"] == "catalog" and effect["ratio"] < 0.3
    assert reason.startswith("total p50") and "not decisive" in reason  # the total alone could not tell


def test_a_choice_that_slows_an_endpoint_is_settled_against_it() -> None:
    kept = [mixed({"catalog": 8.0, "checkout": 5.0}, COUNTS, seed) for seed in range(3)]
    slower = [mixed({"catalog": 1.0, "checkout": 7.5}, COUNTS, s) for s in (10, 11)]
    keep, settled, reason, _ = judge_choice(kept, slower)
    assert not keep and settled and "slower" in reason


def test_an_undecided_choice_asks_for_another_window() -> None:
    kept = [mixed({"catalog": 8.0, "checkout": 5.0}, COUNTS, seed) for seed in range(3)]
    same = [mixed({"catalog": 7.6, "checkout": 4.9}, COUNTS, 10)]
    keep, settled, _, effect = judge_choice(kept, same)
    assert not keep and not settled and effect["ratio"] < 1.0
