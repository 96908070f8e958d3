"""The run's result: the `--json` contract, a markdown summary and an HTML report with a chart."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.findings import SEVERITY_RANK, impact
from tasks.result import ChangeEntry, RunResult
from tasks.results.learning import learning_html, learning_markdown
from tasks.run import Run
from tasks.search.choice import COST_OBJECTIVE

CHART_WIDTH = 720
BAR_HEIGHT = 14


def build_result(run: Run, goals: list[dict[str, Any]]) -> RunResult:
    """The machine-readable result; keys fixed by DESIGN.md."""
    baseline = run.baseline.stats if run.baseline else {"endpoints": {}, "total": {}}
    final = run.current.stats if run.current else baseline
    out: RunResult = {
        "run_id": run.run_id,
        "target": run.spec.name,
        "scope": run.request.scope,
        "status": run.status or "failed",
        "stop_reason": run.stop_reason,
        "baseline": baseline,
        "final": final,
        "findings": [
            {k: v for k, v in f.to_dict().items() if k != "candidate"} for f in ranked_findings(run.findings)
        ],
        "changes": [
            ChangeEntry(kind=c["kind"], description=c["description"], status=c["status"],
                        reason=c["reason"], params=c["params"], effect=c["effect"],
                        **({"patch": c["patch"]} if "patch" in c else {}))  # type: ignore[typeddict-item]
            for c in run.changes
        ],
        "goals": goals,
        "decisions": run.decisions,
        "costs": run.ledger.as_costs(),
        "noise_floor": run.noise.floor(),
        "config": dict(run.rt.config),
    }
    if run.noise.kept_state is not None:
        out["noise_kept_state"] = run.noise.kept_state
    out.update(run.sections)
    return out


def ranked_findings(findings: list[Any]) -> list[Any]:
    """Most severe first; within a severity, the larger resource share, then a candidate change first."""
    return sorted(findings, key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), -impact(f), f.candidate is None,
                                           f.agent, f.kind, f.location))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def before_after_rows(result: Mapping[str, Any], metric: str = "p95_ms") -> list[dict[str, Any]]:
    rows = []
    before, after = result["baseline"], result["final"]
    names = sorted(before.get("endpoints", {})) + ["total"]
    for name in names:
        b = before["total"] if name == "total" else before["endpoints"].get(name, {})
        a = after["total"] if name == "total" else after["endpoints"].get(name, {})
        if not b or not a:
            continue
        ratio = (a[metric] / b[metric]) if b.get(metric) else None
        rows.append({"endpoint": name, "before_p95_ms": b.get(metric), "after_p95_ms": a.get(metric),
                     "ratio": round(ratio, 3) if ratio is not None else None,
                     "before_rps": b.get("rps"), "after_rps": a.get("rps"),
                     "before_error_rate": b.get("error_rate"), "after_error_rate": a.get("error_rate")})
    return rows


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# perfagents run `{result['run_id']}` on `{result['target']}`", "",
             f"Status: **{result['status']}**" + (f" ({result['stop_reason']})" if result.get("stop_reason") else ""),
             f"Noise floor (p95, relative): {result['noise_floor']['p95_rel']:.1%}", "",
             "| endpoint | p95 before (ms) | p95 after (ms) | ratio | rps before | rps after |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in before_after_rows(result):
        lines.append(f"| {r['endpoint']} | {_fmt(r['before_p95_ms'])} | {_fmt(r['after_p95_ms'])} | "
                     f"{_fmt(r['ratio'])} | {_fmt(r['before_rps'])} | {_fmt(r['after_rps'])} |")
    lines += ["", "## Changes", "", "| change | status | effect | 95% CI | why |", "|---|---|---|---|---|"]
    for c in result["changes"]:
        e = c.get("effect") or {}
        effect = f"{e.get('metric', '')} {e.get('endpoint', '')} x{_fmt(e['ratio'])}" if e.get("ratio") else ""
        ci = f"[{e['ci95'][0]:.3g}, {e['ci95'][1]:.3g}]" if e.get("ci95") else ""
        lines.append(f"| {c['description']} | {c['status']} | {effect} | {ci} | {c['reason'] or ''} |")
    lines += ["", "## Findings", ""]
    for f in result["findings"]:
        lines.append(f"- **{f['kind']}** ({f['agent']}, {f['severity']}) at `{f['location']}`"
                     + (f" on `{f['endpoint']}`" if f.get("endpoint") else ""))
    if rows := pareto_rows(result):
        names = list(rows[0])
        lines += ["", "## Pareto front of the knob search", "", "| " + " | ".join(names) + " |",
                  "|" + "---|" * len(names)]
        lines += ["| " + " | ".join(_fmt(r[n]) for n in names) + " |" for r in rows]
    goals = result.get("goals") or []
    if goals:
        lines += ["", "## Goals", ""] + [f"- `{g['expr']}`: {'met' if g['met'] else 'not met'} ({_fmt(g['value'])}"
                                         f"{_goal_evidence(g)})" for g in goals]
    lines += learning_markdown(result)
    c = result["costs"]
    lines += ["", f"Costs: wall {c['wall_s']:.0f} s, load {c['load_s']:.0f} s, CPU {c['cpu_s']:.0f} s, "
              f"tokens {c['tokens']}, USD {c['usd']}"]
    if llm := result.get("llm"):
        kept = sum(1 for ch in result["changes"] if ch["kind"] == "code_patch" and ch["status"] == "kept")
        per_kept = f"{llm['usd'] / kept:.6f}" if kept else "- (none kept)"
        lines += [f"AI advisor: {llm['calls']} call(s), {llm['cache_hits']} cache hit(s), tokens "
                  f"{llm['tokens_in']} in / {llm['tokens_out']} out, USD {llm['usd']}; USD per kept patch {per_kept}"]
    return "\n".join(lines) + "\n"


def _svg_chart(rows: list[dict[str, Any]]) -> str:
    """Paired horizontal bars: p95 before (grey) and after (green) per endpoint, log-free linear scale."""
    rows = [r for r in rows if r["before_p95_ms"] is not None and r["after_p95_ms"] is not None]
    if not rows:
        return ""
    label_w, pad = 150, 4
    top = max(max(r["before_p95_ms"], r["after_p95_ms"]) for r in rows) or 1.0
    scale = (CHART_WIDTH - label_w - 90) / top
    height = len(rows) * (2 * BAR_HEIGHT + 3 * pad) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height}" font-family="sans-serif" font-size="12">']
    y = 10
    for r in rows:
        parts.append(f'<text x="0" y="{y + BAR_HEIGHT + 2}">{html.escape(r["endpoint"])}</text>')
        for value, color in ((r["before_p95_ms"], "#9e9e9e"), (r["after_p95_ms"], "#2e7d32")):
            w = max(1.0, value * scale)
            parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{BAR_HEIGHT}" fill="{color}"/>')
            parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + BAR_HEIGHT - 3}">{value:,.1f} ms</text>')
            y += BAR_HEIGHT + pad
        y += pad
    parts.append(f'<text x="{label_w}" y="{y + 14}">p95 latency: grey = baseline, green = final</text></svg>')
    return "".join(parts)


def _pareto_axes(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """(x, y) objective names of the search: cost across, the other objective up; None without two."""
    front = result.get("pareto") or []
    names = list(front[0]["objectives"]) if front else []
    if len(names) < 2:
        return None
    x = COST_OBJECTIVE if COST_OBJECTIVE in names else names[1]
    return x, next(n for n in names if n != x)


def _svg_pareto(result: Mapping[str, Any]) -> str:
    """Every configuration the search measured (grey; red when infeasible), the Pareto front (green,
    joined by a line) and the chosen point (ringed), on the search's two objectives."""
    axes = _pareto_axes(result)
    if axes is None:
        return ""
    x_name, y_name = axes
    front = result["pareto"]
    points = [p for p in result.get("search_points") or front if x_name in p["objectives"] and y_name in p["objectives"]]
    xs = [p["objectives"][x_name] for p in points]
    ys = [p["objectives"][y_name] for p in points]
    left, top, width, height = 60, 10, CHART_WIDTH - 80, 260
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys) * 1.05 or 1.0
    x0, x1 = (x0 - 0.5, x1 + 0.5) if x1 == x0 else (x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * width, top + height - (y - y0) / (y1 - y0) * height

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{height + 50}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#ccc"/>']
    for p in points:
        cx, cy = px(p["objectives"][x_name], p["objectives"][y_name])
        color = "#9e9e9e" if p.get("feasible", True) else "#c62828"
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}">'
                     f'<title>{html.escape(json.dumps(p["config"]))}</title></circle>')
    stairs = sorted((p["objectives"][x_name], p["objectives"][y_name]) for p in front)
    path = " ".join(f"{'M' if i == 0 else 'L'}{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for i, (x, y) in enumerate(stairs))
    parts.append(f'<path d="{path}" fill="none" stroke="#2e7d32" stroke-width="1.5"/>')
    for p in front:
        cx, cy = px(p["objectives"][x_name], p["objectives"][y_name])
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#2e7d32"/>')
        if p.get("chosen"):
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" stroke="#1565c0" stroke-width="2"/>'
                         f'<text x="{cx + 13:.1f}" y="{cy + 4:.1f}">chosen</text>')
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 6}" y="{px(x0, value)[1] + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    for value in sorted({x for x, _ in stairs} | {min(xs), max(xs)}):
        parts.append(f'<text x="{px(value, y0)[0]:.1f}" y="{top + height + 16}" text-anchor="middle">{_fmt(value)}</text>')
    parts.append(f'<text x="{left}" y="{top + height + 38}">{html.escape(x_name)} across, {html.escape(y_name)} up: '
                 f'grey = measured, red = broke a quality threshold, green = Pareto front</text></svg>')
    return "".join(parts)


def pareto_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Pareto front as table rows (Prefect table artifact, markdown)."""
    return [{**p["config"], **p["objectives"], "chosen": bool(p.get("chosen"))} for p in result.get("pareto") or []]


def render_html(result: Mapping[str, Any]) -> str:
    rows = before_after_rows(result)
    table = "".join(
        f"<tr><td>{html.escape(r['endpoint'])}</td><td>{_fmt(r['before_p95_ms'])}</td><td>{_fmt(r['after_p95_ms'])}</td>"
        f"<td>{_fmt(r['ratio'])}</td><td>{_fmt(r['before_rps'])}</td><td>{_fmt(r['after_rps'])}</td></tr>"
        for r in rows
    )
    changes = "".join(
        f"<tr><td>{html.escape(c['description'])}</td><td>{c['status']}</td>"
        f"<td>{_fmt((c.get('effect') or {}).get('ratio', ''))}</td>"
        f"<td>{html.escape(str((c.get('effect') or {}).get('ci95', '')))}</td><td>{html.escape(c['reason'] or '')}</td></tr>"
        for c in result["changes"]
    )
    findings = "".join(
        f"<li><b>{html.escape(f['kind'])}</b> ({html.escape(f['agent'])}, {f['severity']}) at "
        f"<code>{html.escape(str(f['location']))}</code><details><summary>evidence</summary><pre>"
        f"{html.escape(json.dumps(f['evidence'], indent=1, default=str)[:4000])}</pre></details></li>"
        for f in result["findings"]
    )
    pareto = ""
    if result.get("pareto"):
        pareto = (f"<h2>Pareto front of the knob search</h2>{_svg_pareto(result)}<p>"
                  + "<br>".join(html.escape(json.dumps(r, default=str)) for r in pareto_rows(result)) + "</p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>perfagents {html.escape(result['target'])}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,td:last-child{{text-align:left}}</style></head><body>
<h1>perfagents: {html.escape(result['target'])} <small>{html.escape(result['run_id'])}</small></h1>
<p>Status: <b>{html.escape(result['status'])}</b> {html.escape(result.get('stop_reason') or '')} &middot;
noise floor {result['noise_floor']['p95_rel']:.1%} &middot; costs {html.escape(json.dumps(result['costs']))}</p>
<h2>Before / after</h2>{_svg_chart(rows)}
<table><tr><th>endpoint</th><th>p95 before ms</th><th>p95 after ms</th><th>ratio</th><th>rps before</th><th>rps after</th></tr>{table}</table>
<h2>Changes</h2><table><tr><th>change</th><th>status</th><th>ratio</th><th>95% CI</th><th>why</th></tr>{changes}</table>
{pareto}{learning_html(result)}<h2>Findings</h2><ul>{findings}</ul></body></html>"""


def write_reports(result: RunResult, folder: Path, json_path: Path | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"html": folder / f"report-{result['run_id']}.html", "markdown": folder / f"report-{result['run_id']}.md"}
    result["report_html"] = str(paths["html"])
    paths["html"].write_text(render_html(result))
    paths["markdown"].write_text(render_markdown(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, default=str))
        paths["json"] = json_path
    return paths


def _goal_evidence(goal: dict[str, Any]) -> str:
    """A Web Vitals goal's interval and page loads (tasks/decisions/vitals.py), or why it has none."""
    if "ci95" in goal:
        return f", 95% CI [{goal['ci95'][0]:g}, {goal['ci95'][1]:g}] over {goal['loads']} page loads"
    return f"; {goal['reason']}" if goal.get("reason") else ""
