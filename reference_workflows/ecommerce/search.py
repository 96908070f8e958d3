"""Product search: SQL LIKE for candidates, then relevance scoring in pure Python.

The planted CPU hot spot is ``score_product``: for every candidate it tokenizes the name
and description, counts term hits and runs a pure-Python edit distance of each query
term against each name token, holding the GIL all the while (in production this belongs in the database's
full-text index, FTS5).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from reference_workflows.ecommerce.db import Database

SEARCH_CANDIDATES = 100  # rows fetched for scoring
SEARCH_RESULTS = 20
MAX_TERMS = 4
NAME_WEIGHT = 3.0
FUZZY_THRESHOLD = 0.75
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, the textbook O(len(a) * len(b)) dynamic programme."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    return 1.0 - edit_distance(a, b) / longest if longest else 1.0


def score_product(terms: list[str], name: str, description: str) -> float:
    """Relevance of one product to the query terms (higher is better)."""
    name_tokens = tokenize(name)
    description_counts = Counter(tokenize(description))
    description_len = sum(description_counts.values()) or 1
    score = 0.0
    for term in terms:
        best = max((similarity(term, token) for token in name_tokens), default=0.0)
        if best >= FUZZY_THRESHOLD:
            score += NAME_WEIGHT * best
        score += description_counts[term] / description_len
    return score


def search_terms(query: str) -> list[str]:
    return list(dict.fromkeys(tokenize(query)))[:MAX_TERMS]


def search_products(db: Database, query: str, limit: int = SEARCH_RESULTS) -> list[dict[str, Any]]:
    """Top ``limit`` products for ``query``, best first."""
    terms = search_terms(query)
    if not terms:
        return []
    where = " OR ".join("name LIKE ?" for _ in terms)
    rows = db.query(
        f"SELECT id, name, price, description, category_id FROM products WHERE {where} LIMIT ?",
        [f"%{t}%" for t in terms] + [SEARCH_CANDIDATES])
    scored = sorted(((score_product(terms, r[1], r[3]), r) for r in rows), key=lambda sr: (-sr[0], sr[1][0]))
    return [{"id": r[0], "name": r[1], "price": r[2], "description": r[3], "category_id": r[4],
             "score": round(s, 4)} for s, r in scored[:limit]]
