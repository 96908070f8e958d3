"""The run's result: the `--json` contract, a markdown summary, and where the reports are written.

The HTML report is tasks/results/html_report.py; the rows both reports show, tasks/results/tables.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks.findings import SEVERITY_RANK, impact
from tasks.result import ChangeEntry, RunResult
from tasks.results.html_report import render_html
from tasks.results.learning import learning_markdown
from tasks.results.tables import before_after_rows, cost_rows, fmt, pareto_rows
from tasks.run import Run

__all__ = ["before_after_rows", "build_result", "pareto_rows", "ranked_findings", "render_html", "render_markdown",
           "write_reports"]


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
        "load_generator": run.rt.load_generator.summary(),
    }
    if run.noise.kept_state is not None:
        out["noise_kept_state"] = run.noise.kept_state
    out.update(run.sections)
    return out


def ranked_findings(findings: list[Any]) -> list[Any]:
    """Most severe first; within a severity, the larger resource share, then a candidate change first."""
    return sorted(findings, key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), -impact(f), f.candidate is None,
                                           f.agent, f.kind, f.location))


def render_markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# perfagents run `{result['run_id']}` on `{result['target']}`", "",
             f"Status: **{result['status']}**" + (f" ({result['stop_reason']})" if result.get("stop_reason") else ""),
             f"Noise floor (p95, relative): {result['noise_floor']['p95_rel']:.1%}", "",
             "| endpoint | p95 before (ms) | p95 after (ms) | ratio | rps before | rps after |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in before_after_rows(result):
        lines.append(f"| {r['endpoint']} | {fmt(r['before_p95_ms'])} | {fmt(r['after_p95_ms'])} | "
                     f"{fmt(r['ratio'])} | {fmt(r['before_rps'])} | {fmt(r['after_rps'])} |")
    lines += ["", "## Changes", "", "| change | status | effect | 95% CI | why |", "|---|---|---|---|---|"]
    for c in result["changes"]:
        e = c.get("effect") or {}
        effect = f"{e.get('metric', '')} {e.get('endpoint', '')} x{fmt(e['ratio'])}" if e.get("ratio") else ""
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
        lines += ["| " + " | ".join(fmt(r[n]) for n in names) + " |" for r in rows]
    goals = result.get("goals") or []
    if goals:
        lines += ["", "## Goals", ""] + [f"- `{g['expr']}`: {'met' if g['met'] else 'not met'} ({fmt(g['value'])}"
                                         f"{_goal_evidence(g)})" for g in goals]
    lines += learning_markdown(result)
    lines += ["", "## Costs", "", "| cost | spent | note |", "|---|---:|---|"]
    lines += [f"| {r['cost']} | {r['value']} | {r['note']} |" for r in cost_rows(result)]
    return "\n".join(lines) + "\n"


def write_reports(result: RunResult, folder: Path, json_path: Path | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"html": folder / f"report-{result['run_id']}.html", "markdown": folder / f"report-{result['run_id']}.md"}
    result["report_html"] = str(paths["html"])
    paths["html"].write_text(render_html(result), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(result), encoding="utf-8")
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
