"""Estimated against measured, per kind of estimate, over the store's whole history: the result's
``learning`` section and its markdown and HTML tables (tasks/search/estimates.py computes it)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from tasks.search.estimates import fit_history, history, kind_summary, observations

COLUMNS = ("kind", "tried", "kept", "reverted", "measured", "estimated", "measured ratio", "came true (95% CI)")
NOTE = ("ratios are geometric means over the changes with a measured interval (below 1 = faster); "
        "\"came true\" is the share of the estimated log-gain measured, 1 = as estimated: the ranking "
        "scales each kind's next estimates by it")


def learning_section(store: Any) -> dict[str, Any]:
    """The result's ``learning``: per kind rows, the number of observations and their spread."""
    rows = history(store)
    calibration = fit_history(store) if rows else None
    return {"kinds": kind_summary(rows, calibration), "changes": len(rows), "observations": len(observations(rows)),
            "omega": round(calibration.omega, 4) if calibration is not None else None}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.3g}"


def _share(row: Mapping[str, Any]) -> str:
    if row.get("share") is None:
        return "-"
    lo, hi = row["share_ci95"]
    return f"{row['share']:.2f} [{lo:.2f}, {hi:.2f}]"


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [str(row["kind"]), str(row["tried"]), str(row["kept"]), str(row["reverted"]), str(row["measured"]),
            _ratio(row["estimated_ratio"]), _ratio(row["measured_ratio"]), _share(row)]


def learning_markdown(result: Mapping[str, Any]) -> list[str]:
    """The markdown lines of the section (none when the history is empty)."""
    kinds = (result.get("learning") or {}).get("kinds") or []
    if not kinds:
        return []
    lines = ["", "## Estimated against measured, per kind (the store's history)", "",
             "| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in kinds]
    return [*lines, "", NOTE[0].upper() + NOTE[1:] + "."]


def learning_html(result: Mapping[str, Any]) -> str:
    kinds = (result.get("learning") or {}).get("kinds") or []
    if not kinds:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in kinds)
    return (f"<h2>Estimated against measured, per kind</h2><table><tr>{head}</tr>{body}</table>"
            f"<p><small>{html.escape(NOTE)}.</small></p>")
