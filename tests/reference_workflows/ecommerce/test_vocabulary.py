"""The shop's search queries: a fixed head of popular queries drawn by rank, and fresh ones."""

from __future__ import annotations

import random
from collections import Counter

from reference_workflows.ecommerce import vocabulary


def test_popular_queries_are_distinct_and_the_same_in_every_process() -> None:
    queries = vocabulary.popular_queries(40)
    assert len(set(queries)) == 40 and queries == vocabulary.popular_queries(40)
    assert queries != vocabulary.popular_queries(40, seed=1)
    for query in queries:
        terms = query.split("+")
        assert 1 <= len(terms) <= 2 and len(set(terms)) == len(terms)
        assert set(terms) <= set(vocabulary.SEARCH_TERMS)


def test_zipf_weights_put_the_head_first() -> None:
    rng = random.Random(0)
    queries = vocabulary.popular_queries(40)
    drawn = Counter(rng.choices(queries, weights=vocabulary.zipf_weights(40, 1.0), k=20_000))
    top = drawn[queries[0]] / 20_000
    assert 0.20 < top < 0.26  # 1 / H(40) = 0.233
    assert drawn[queries[0]] > 10 * drawn[queries[-1]]
    assert sum(drawn[q] for q in queries[:10]) / 20_000 > 0.65  # H(10) / H(40) = 0.68


def test_fresh_queries_mix_one_and_two_terms() -> None:
    rng = random.Random(1)
    lengths = Counter(len(vocabulary.random_query(rng).split("+")) for _ in range(2000))
    assert set(lengths) == {1, 2} and abs(lengths[2] / 2000 - vocabulary.TWO_TERM_SHARE) < 0.05
