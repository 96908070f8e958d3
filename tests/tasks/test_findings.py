"""Finding strength and ranking: severity first, then the share of a resource the cause holds."""

from __future__ import annotations

from tasks.findings import Finding, impact, stronger
from tasks.results.report import ranked_findings


def finding(kind: str, location: str, severity: str, **gain: float) -> Finding:
    return Finding(agent="a", kind=kind, location=location, severity=severity, evidence={}, estimated_gain=gain)


def test_impact_reads_resource_shares_only() -> None:
    assert impact(finding("hot_function", "m:f", "high", share_of_cpu=0.4, mb_per_hour=900.0)) == 0.4
    assert impact(finding("slow_query", "t", "low", db_time_share=0.2, total_ms=5000.0)) == 0.2
    assert impact(finding("render_blocking", "/app.js", "high", ms=30.0)) == 0.0


def test_stronger_and_ranking() -> None:
    small = finding("hot_function", "search:score", "low", share_of_cpu=0.1)
    grown = finding("hot_function", "search:score", "medium", share_of_cpu=0.25)
    assert stronger(grown, small) and not stronger(small, grown)
    big_db = finding("missing_index", "orders.customer_id", "high", db_time_share=0.6)
    frontend = finding("no_cache_headers", "/app.js", "high")
    assert ranked_findings([small, frontend, grown, big_db]) == [big_db, frontend, grown, small]
