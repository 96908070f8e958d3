"""The decision timeline as inline SVG: every change tried, in order, with its measured ratio and
95% interval drawn against the noise band and the decision boundary (tasks/decisions/rule.py).

A row per change: the ratio (after/before) of the metric the change was judged on, its interval
as a bar, and, when the trial also measured the endpoint's p95 (the tail guard of a median
decision, or beside a throughput decision), that interval as a thinner line below. Behind them: the band a single window moves by noise alone (the
baseline's noise floor of that metric), the line of no change, and the keep boundary (MIN_GAIN).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from tasks.decisions.rule import MIN_GAIN
from tasks.results.charts import BLUE, GREEN, GREY, RED, log_ticks, svg_open
from tasks.results.sentences import plural

WIDTH = 900
PLOT_X0, PLOT_X1 = 10, 620
ROW_H = 46
LEGEND_H = 56
TOP = 38
NOISE_KEYS = {"p50_ms": "p50_rel", "p95_ms": "p95_rel", "rps": "rps_rel"}
DESCRIPTION_CHARS = 110
OUTCOME_WORDS = {"better": "faster", "worse": "slower", "no_gain": "no gain worth keeping", "undecided": "undecided"}


def trials(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The changes in the order tried, each with its decision (outcome, windows, looks) when one was made."""
    pending: dict[str, list[dict[str, Any]]] = {}
    for d in result.get("decisions") or []:
        pending.setdefault(d.get("change", ""), []).append(d)
    out = []
    for i, c in enumerate(result.get("changes") or [], 1):
        queue = pending.get(c["description"])
        decision = queue.pop(0) if queue else {}
        out.append({"n": i, "change": c, "decision": decision, "effect": _measured(c.get("effect"))})
    return out


def _measured(effect: Any) -> dict[str, Any] | None:
    ok = (isinstance(effect, dict) and isinstance(effect.get("ratio"), int | float) and effect["ratio"] > 0
          and len(effect.get("ci95") or []) == 2 and all(isinstance(v, int | float) and v > 0 for v in effect["ci95"]))
    return effect if ok else None


def noise_band(result: Mapping[str, Any], metric: str) -> float | None:
    """How far one window's value of ``metric`` moves by noise alone (relative), from the noise floor."""
    value = (result.get("noise_floor") or {}).get(NOISE_KEYS.get(metric, ""))
    return float(value) if isinstance(value, int | float) and value > 0 else None


def keep_boundary(metric: str) -> float:
    """The ratio a change's bound must pass to be kept: MIN_GAIN faster (or MIN_GAIN more rps)."""
    return 1 + MIN_GAIN if metric == "rps" else 1 / (1 + MIN_GAIN)


def color(row: dict[str, Any]) -> str:
    if row["change"]["status"] == "kept":
        return GREEN
    return RED if row["decision"].get("outcome") == "worse" else GREY


def svg_timeline(result: Mapping[str, Any]) -> str:
    rows = trials(result)
    if not rows:
        return ""
    bounds = [1.0]
    for r in rows:
        if e := r["effect"]:
            bounds += [*e["ci95"], e["ratio"], keep_boundary(e["metric"])]
            if tail := _measured(e.get("tail")):
                bounds += tail["ci95"]
            if band := noise_band(result, e["metric"]):
                bounds += [1 / (1 + band), 1 + band]
    lo, hi = min(bounds) / 1.25, max(bounds) * 1.25

    def x(v: float) -> float:
        return PLOT_X0 + (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * (PLOT_X1 - PLOT_X0)

    height = TOP + len(rows) * ROW_H + LEGEND_H
    parts = [svg_open(WIDTH, height),
             f'<text x="{PLOT_X0}" y="13" font-weight="bold">ratio after/before (log scale; below 1 = faster)</text>']
    for t in log_ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" y1="{TOP - 6}" x2="{x(t):.1f}" y2="{height - LEGEND_H}" stroke="#eee"/>'
                     f'<text x="{x(t):.1f}" y="{TOP - 9}" text-anchor="middle" font-size="10">{t:g}</text>')
    for i, r in enumerate(rows):
        parts.append(_row(r, TOP + i * ROW_H, x, result))
    legend = ("bar: the 95% interval of the ratio of the metric the change was judged on; dot: the measured ratio",
              "(green = kept, red = slower, grey = reverted); thin blue line: the same endpoint's p95 and its interval;",
              f"grey band: one window's noise (baseline noise floor); solid line: no change; dashed: the keep boundary "
              f"({MIN_GAIN:.0%} better).")
    parts += [f'<text x="{PLOT_X0}" y="{height - LEGEND_H + 18 + 15 * i}">{html.escape(line)}</text>'
              for i, line in enumerate(legend)]
    parts.append("</svg>")
    return "".join(parts)


def _row(r: dict[str, Any], y: float, x: Any, result: Mapping[str, Any]) -> str:
    c, e, d = r["change"], r["effect"], r["decision"]
    desc = c["description"] if len(c["description"]) <= DESCRIPTION_CHARS else c["description"][:DESCRIPTION_CHARS - 1] + "…"
    out = [f'<text x="{PLOT_X0}" y="{y + 10:.0f}"><tspan font-weight="bold" fill="{color(r)}">{r["n"]}. '
           f'{html.escape(c["status"])}</tspan> {html.escape(desc)}</text>']
    mid = y + 25
    if e is None:
        why = c.get("reason") or "no measured effect"
        out.append(f'<text x="{PLOT_X0 + 14}" y="{mid + 4:.0f}" fill="#555">no measurement: '
                   f'{html.escape(why[:DESCRIPTION_CHARS])}</text>')
        return "".join(out)
    if band := noise_band(result, e["metric"]):
        out.append(f'<rect x="{x(1 / (1 + band)):.1f}" y="{mid - 9:.0f}" width="{x(1 + band) - x(1 / (1 + band)):.1f}" '
                   f'height="18" fill="#e0e0e0"><title>noise of one window: ±{band:.1%}</title></rect>')
    boundary = keep_boundary(e["metric"])
    out.append(f'<line x1="{x(1.0):.1f}" y1="{mid - 11:.0f}" x2="{x(1.0):.1f}" y2="{mid + 11:.0f}" stroke="#424242"/>'
               f'<line x1="{x(boundary):.1f}" y1="{mid - 11:.0f}" x2="{x(boundary):.1f}" y2="{mid + 11:.0f}" '
               f'stroke="{GREEN}" stroke-dasharray="3,2"/>')
    lo, hi = e["ci95"]
    tip = f"{e['metric']} on {e.get('endpoint') or 'total'}: x{e['ratio']:.3g}, 95% CI [{lo:.3g}, {hi:.3g}]"
    out.append(f'<g><title>{html.escape(tip)}</title>'
               f'<rect x="{x(lo):.1f}" y="{mid - 4:.0f}" width="{max(2.0, x(hi) - x(lo)):.1f}" height="8" '
               f'fill="{color(r)}" fill-opacity="0.45"/>'
               f'<circle cx="{x(e["ratio"]):.1f}" cy="{mid:.0f}" r="4.5" fill="{color(r)}"/></g>')
    if tail := _measured(e.get("tail")):
        t_lo, t_hi = tail["ci95"]
        t_tip = f"p95 on {e.get('endpoint') or 'total'}: x{tail['ratio']:.3g}, 95% CI [{t_lo:.3g}, {t_hi:.3g}]"
        out.append(f'<g><title>{html.escape(t_tip)}</title>'
                   f'<line x1="{x(t_lo):.1f}" y1="{mid + 8:.0f}" x2="{x(t_hi):.1f}" y2="{mid + 8:.0f}" stroke="{BLUE}"/>'
                   f'<circle cx="{x(tail["ratio"]):.1f}" cy="{mid + 8:.0f}" r="2.5" fill="{BLUE}"/></g>')
    looks = f"; {plural(d['windows'], 'window')}, {plural(d['looks'], 'look')}" if "windows" in d and "looks" in d else ""
    outcome = OUTCOME_WORDS.get(d.get("outcome", ""), "")
    out.append(f'<text x="{PLOT_X1 + 12}" y="{mid - 2:.0f}">{html.escape(e["metric"])} x{e["ratio"]:.3g} '
               f'[{lo:.3g}, {hi:.3g}]</text>'
               f'<text x="{PLOT_X1 + 12}" y="{mid + 12:.0f}" font-size="10" fill="#555">'
               f'{html.escape((e.get("endpoint") or "total") + (": " + outcome if outcome else "") + looks)}</text>')
    return "".join(out)
