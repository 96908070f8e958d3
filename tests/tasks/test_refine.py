"""The state key in search window labels: what a window's config does not show."""

from __future__ import annotations

import re

from tasks.refine import state_key
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
