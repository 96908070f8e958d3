"""The run's HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched).

Sections: the status and goals; before/after per endpoint (chart and table); the decision
timeline (each change tried: its ratio and interval against the noise band and the keep
boundary) and the changes' table; the knob search's Pareto front when a search ran; the
findings as sentences; the costs as a table.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from tasks.results.charts import svg_endpoints, svg_pareto
from tasks.results.evidence_items import SHORT_TEXT, flatten
from tasks.results.learning import learning_html
from tasks.results.sentences import finding_sentence
from tasks.results.tables import before_after_rows, cost_rows, fmt, pareto_rows
from tasks.results.timeline import svg_timeline

STYLE = """body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#212121;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child,td.text{text-align:left}.sev{font-size:.8em;padding:1px 5px;border-radius:3px;color:#fff}
.high{background:#c62828}.medium{background:#ef6c00}.low{background:#757575}.met{color:#2e7d32}.unmet{color:#c62828}
details{font-size:.85em;color:#555}li{margin:.4em 0}svg{max-width:100%;height:auto}"""


def _e(v: Any) -> str:
    return html.escape(str(v))


def _status(result: Mapping[str, Any]) -> str:
    floor = result.get("noise_floor") or {}
    noise = [f"p95 {floor['p95_rel']:.1%}"] + ([f"median {floor['p50_rel']:.1%}"] if floor.get("p50_rel") else [])
    goals = "".join(
        f"<li class=\"{'met' if g.get('met') else 'unmet'}\"><code>{_e(g['expr'])}</code>: "
        f"{'met' if g.get('met') else 'not met'} ({_e(fmt(g.get('value')))}"
        + (f", 95% CI [{g['ci95'][0]:g}, {g['ci95'][1]:g}] over {g.get('loads')} page loads" if g.get("ci95") else "")
        + (f"; {_e(g['reason'])}" if g.get("reason") else "") + ")</li>"
        for g in result.get("goals") or [])
    return (f"<p>Status: <b>{_e(result['status'])}</b> {_e(result.get('stop_reason') or '')}<br>"
            f"Noise floor (how far two identical agent-free windows differ): {', '.join(noise)}</p>"
            + (f"<h2>Goals</h2><ul>{goals}</ul>" if goals else ""))


def _before_after(result: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(r['endpoint'])}</td><td>{fmt(r['before_p95_ms'])}</td><td>{fmt(r['after_p95_ms'])}</td>"
        f"<td>{fmt(r['ratio'])}</td><td>{fmt(r['before_rps'])}</td><td>{fmt(r['after_rps'])}</td></tr>"
        for r in before_after_rows(result))
    return (f"<h2>Before / after per endpoint</h2>{svg_endpoints(result)}"
            "<table><tr><th>endpoint</th><th>p95 before ms</th><th>p95 after ms</th><th>ratio</th><th>rps before</th>"
            f"<th>rps after</th></tr>{rows}</table>")


def _decisions(result: Mapping[str, Any]) -> str:
    changes = result.get("changes") or []
    if not changes:
        return "<h2>Decision timeline</h2><p>No change was tried.</p>"
    rows = []
    for c in changes:
        e = c.get("effect") or {}
        ci = e.get("ci95")
        rows.append(f"<tr><td class=\"text\">{_e(c['description'])}</td><td class=\"text\">{_e(c['status'])}</td>"
                    f"<td>{_e(fmt(e['ratio'])) if e.get('ratio') is not None else ''}</td>"
                    f"<td>{f'[{ci[0]:.3g}, {ci[1]:.3g}]' if ci else ''}</td><td class=\"text\">{_e(c.get('reason') or '')}</td></tr>")
    return (f"<h2>Decision timeline</h2>{svg_timeline(result)}"
            "<table><tr><th>change</th><th>status</th><th>ratio</th><th>95% CI</th><th>why</th></tr>"
            + "".join(rows) + "</table>")


def _pareto(result: Mapping[str, Any]) -> str:
    rows = pareto_rows(result)
    if not rows:
        return ""
    names = list(rows[0])
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    body = "".join("<tr>" + "".join(f"<td>{_e(fmt(r[n]))}</td>" for n in names) + "</tr>" for r in rows)
    return f"<h2>Pareto front of the knob search</h2>{svg_pareto(result)}<table><tr>{head}</tr>{body}</table>"


def _findings(result: Mapping[str, Any]) -> str:
    findings = result.get("findings") or []
    if not findings:
        return "<h2>Findings</h2><p>No finding.</p>"
    return "<h2>Findings</h2><ol>" + "".join(_finding_item(f) for f in findings) + "</ol>"


def _finding_item(f: Mapping[str, Any]) -> str:
    numbers = _numbers(f)
    return (f"<li><span class=\"sev {_e(f.get('severity'))}\">{_e(f.get('severity'))}</span> {_e(finding_sentence(f))} "
            f"<small>({_e(f.get('agent'))}: {_e(str(f.get('kind')).replace('_', ' '))})</small>"
            + (f"<details><summary>its numbers</summary>{_e(numbers)}</details>" if numbers else "") + "</li>")


def _numbers(finding: Mapping[str, Any]) -> str:
    """The evidence's numbers and short values (``key value``); excerpts (SQL, plans, stacks) are left to --json."""
    scalars: list[str] = []
    for key, value in (finding.get("evidence") or {}).items():
        flatten(key, value, scalars, [], SHORT_TEXT)
    return ", ".join(s.replace("=", " ", 1) for s in scalars)


def _costs(result: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td>{_e(r['cost'])}</td><td>{_e(r['value'])}</td><td class=\"text\">{_e(r['note'])}</td></tr>"
                   for r in cost_rows(result))
    return f"<h2>Costs</h2><table><tr><th>cost</th><th>spent</th><th>note</th></tr>{rows}</table>" if rows else ""


def render_html(result: Mapping[str, Any]) -> str:
    title = f"perfagents: {result['target']}"
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{STYLE}</style>"
            f"</head><body><h1>{_e(title)} <small>{_e(result['run_id'])}</small></h1>"
            + _status(result) + _before_after(result) + _decisions(result) + _pareto(result) + learning_html(result)
            + _findings(result) + _costs(result) + "</body></html>")
