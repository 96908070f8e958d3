"""What a run leaves behind: its result document and reports, an LLM evidence bundle, its history.

    report.py           the ``--json`` result, the markdown summary, writing the reports
    html_report.py      the HTML report (one self-contained page): its sections
    charts.py           its inline SVG charts: before/after per endpoint, the Pareto front
    timeline.py         its decision timeline: each change's ratio and interval against noise and boundary
    sentences.py        findings as sentences
    tables.py           rows both reports and the Prefect artifacts show (before/after, Pareto, costs)
    evidence.py         a token-budgeted evidence bundle of one run (packing, tiktoken counts)
    evidence_items.py   the bundle's pieces: each part of a result at levels of detail
    history.py          earlier runs from the store, and drift against them
    signature.py        a run's signature (per endpoint) at its end
    regressions.py      change points in each target's signature history (``perfagents regressions``)
    learning.py         estimated against measured per kind, over the store's history (the report's table)
    dashboard/          the live web page (``perfagents dashboard``; imported only by that command)
"""

from __future__ import annotations

from tasks.results.evidence import MIN_TOKENS, Bundle, build_bundle, count_tokens, load_result
from tasks.results.history import drift, run_history
from tasks.results.report import build_result, render_markdown, write_reports

__all__ = [
    "MIN_TOKENS",
    "Bundle",
    "build_bundle",
    "build_result",
    "count_tokens",
    "drift",
    "load_result",
    "render_markdown",
    "run_history",
    "write_reports",
]
