"""What a run leaves behind: its result document and reports, an LLM evidence bundle, its history.

    report.py           the ``--json`` result, the markdown summary and the HTML report
    evidence.py         a token-budgeted evidence bundle of one run (packing, tiktoken counts)
    evidence_items.py   the bundle's pieces: each part of a result at levels of detail
    history.py          earlier runs from the store, and drift against them
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
