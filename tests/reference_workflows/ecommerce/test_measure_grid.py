"""The grid script's --where filter (the measuring itself is the script's run, recorded in grid.json)."""

from __future__ import annotations

import pytest

from reference_workflows.ecommerce.grid.measure_grid import parse_where

SPACE = {"workers": [1, 2], "gzip": [False, True], "cache_ttl_s": [0, 60, 120]}


def test_where_takes_one_or_several_values_of_a_knob() -> None:
    assert parse_where(["gzip=false", "cache_ttl_s=60,120"], SPACE) == {"gzip": [False], "cache_ttl_s": [60, 120]}
    assert parse_where([], SPACE) == {}


@pytest.mark.parametrize("term", ["gzip", "nope=1", "cache_ttl_s=30", "cache_ttl_s=60,"])
def test_where_rejects_what_is_not_a_grid_value(term: str) -> None:
    with pytest.raises(ValueError, match="--where"):
        parse_where([term], SPACE)
