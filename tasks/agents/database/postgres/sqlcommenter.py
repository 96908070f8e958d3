"""Endpoints from sqlcommenter tags: how a PostgreSQL target in any language says which request ran a query.

Targets instrumented with sqlcommenter (Rails, Django, Spring, Go, Node and OpenTelemetry
integrations) append ``/*controller='events',route='%2Fevents%2F%3Aid'*/`` to every statement.
``pg_stat_statements`` keeps one text per query id, so the tags of one call are all it shows;
``pg_stat_activity`` shows each running query's own text and ``query_id``. The activity sampler
(tasks.agents.database.postgres.activity) passes the texts of the active client backends to
``TagVotes.add``; ``endpoint_of`` then names, for a set of query ids, the route (else
``controller#action``) that at least MAJORITY_SHARE of their samples carried. The routes are
matched to Locust names by path template (tasks.agents.database.sql.stats.map_endpoints).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tasks.agents.database.sql.stats import map_endpoints

MAJORITY_SHARE = 0.6
_COMMENT = re.compile(r"/\*(?P<body>[^*]*(?:\*(?!/)[^*]*)*)\*/\s*;?\s*$")
_PAIR = re.compile(r"(?P<key>[\w.-]+)='(?P<value>(?:[^'\\]|\\.)*)'")


def tags(query: str) -> dict[str, str]:
    """The sqlcommenter key/values at the end of ``query`` (URL-decoded); {} without a comment."""
    match = _COMMENT.search(query or "")
    if match is None:
        return {}
    return {m["key"]: unquote(m["value"].replace("\\'", "'")) for m in _PAIR.finditer(match["body"])}


def request_label(tagged: dict[str, str]) -> str | None:
    """The route a statement's tags name, else ``controller#action`` (or the controller)."""
    if tagged.get("route"):
        return tagged["route"]
    if tagged.get("controller"):
        return tagged["controller"] + (f"#{tagged['action']}" if tagged.get("action") else "")
    return None


@dataclass
class TagVotes:
    """Samples of (query id, request label) from pg_stat_activity."""

    votes: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    samples: int = 0

    def add(self, rows: Iterable[tuple[int | None, str | None]]) -> None:
        for query_id, query in rows:
            if query_id is None or not query or "/*" not in query:
                continue
            label = request_label(tags(query))
            if label is not None:
                self.votes[int(query_id)][label] += 1
                self.samples += 1

    def to_dict(self) -> dict[str, Any]:
        return {str(q): dict(c) for q, c in self.votes.items()}


def endpoint_of(votes: dict[str, dict[str, int]], query_ids: Iterable[int | str | None],
                spec_endpoints: Iterable[tuple[str, str]], sample_names: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The Locust name (or the label itself) holding MAJORITY_SHARE of the query ids' tagged samples."""
    total: Counter[str] = Counter()
    for query_id in query_ids:
        total.update(votes.get(str(query_id), {}))
    if not total:
        return None, {}
    label, count = total.most_common(1)[0]
    share = count / sum(total.values())
    evidence = {"endpoint_attribution": f"sqlcommenter tags of running queries ({share:.0%} of {sum(total.values())} "
                                        "pg_stat_activity samples)", "endpoint_tags": dict(total.most_common(5))}
    if share < MAJORITY_SHARE:
        return None, evidence
    named = map_endpoints([label], list(spec_endpoints), sample_names)
    return named.get(label, label), evidence
