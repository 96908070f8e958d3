"""The search scoring: correct edit distance, sensible ranking."""

from __future__ import annotations

import pytest

from reference_workflows.ecommerce.search import edit_distance, score_product, search_terms


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("", "", 0), ("lamp", "lamp", 0), ("lamp", "lamps", 1), ("kitten", "sitting", 3), ("", "oak", 3),
])
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_name_matches_outrank_description_mentions() -> None:
    terms = search_terms("Wireless  LAMP lamp")
    assert terms == ["wireless", "lamp"]
    in_name = score_product(terms, "Wireless Oak Lamp", "A lamp.")
    fuzzy_name = score_product(terms, "Wireles Oak Lamps", "Nothing here.")
    in_text = score_product(terms, "Classic Oak Chair", "Goes well with a wireless lamp.")
    assert in_name > fuzzy_name > in_text > 0
    assert score_product(terms, "Classic Oak Chair", "Nothing here.") == 0
