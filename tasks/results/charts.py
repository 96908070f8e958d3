"""The HTML report's charts as inline SVG, drawn here (no script, no network): before/after per
endpoint and the knob search's Pareto front. The decision timeline is tasks/results/timeline.py."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

from tasks.results.tables import fmt
from tasks.search.choice import COST_OBJECTIVE

CHART_WIDTH = 900
GREY, GREEN, RED, BLUE = "#9e9e9e", "#2e7d32", "#c62828", "#1565c0"
QUANTILES = ("p50_ms", "p95_ms", "p99_ms")
LINE_H = 12  # one quantile's line in an endpoint's row
ROW_PAD = 12


def svg_open(width: int, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
            f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="12">')


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between ``lo`` and ``hi`` (both > 0); only the powers of ten when there are many."""
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    return inside if len(inside) <= 8 else [t for t in inside if math.log10(t).is_integer()]


def endpoint_panels(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(name, before, after) per endpoint with latencies in both, then the total."""
    before, after = result.get("baseline") or {}, result.get("final") or {}
    names = sorted(set(before.get("endpoints") or {}) & set(after.get("endpoints") or {}))
    rows = [(n, before["endpoints"][n], after["endpoints"][n]) for n in names]
    rows.append(("total", before.get("total") or {}, after.get("total") or {}))
    return [(n, b, a) for n, b, a in rows if all((b.get(q) or 0) > 0 and (a.get(q) or 0) > 0 for q in QUANTILES)]


def svg_endpoints(result: Mapping[str, Any]) -> str:
    """Per endpoint: p50, p95 and p99 before (grey) and after (green when faster, red when slower) on one
    log latency axis, and the throughput before/after as two bars."""
    rows = endpoint_panels(result)
    if not rows:
        return ""
    lat_x0, lat_x1, rps_x0, rps_x1, top = 180, 640, 690, CHART_WIDTH - 60, 34
    values = [r[q] for _, b, a in rows for r in (b, a) for q in QUANTILES]
    lo, hi = min(values) / 1.3, max(values) * 1.3
    rps_top = max(max(b.get("rps") or 0, a.get("rps") or 0) for _, b, a in rows) or 1.0

    def lx(v: float) -> float:
        return lat_x0 + (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo)) * (lat_x1 - lat_x0)

    row_h = len(QUANTILES) * LINE_H + ROW_PAD
    height = top + len(rows) * row_h + 30
    parts = [svg_open(CHART_WIDTH, height),
             f'<text x="{lat_x0}" y="12" font-weight="bold">latency (ms, log scale)</text>',
             f'<text x="{rps_x0}" y="12" font-weight="bold">throughput (requests/s)</text>']
    for t in log_ticks(lo, hi):
        parts.append(f'<line x1="{lx(t):.1f}" y1="{top - 6}" x2="{lx(t):.1f}" y2="{height - 30}" stroke="#eee"/>'
                     f'<text x="{lx(t):.1f}" y="{top - 10}" text-anchor="middle" font-size="10">{fmt(t)}</text>')
    for i, (name, b, a) in enumerate(rows):
        y = top + i * row_h
        if name == "total":
            parts.append(f'<line x1="0" y1="{y - ROW_PAD / 2:.0f}" x2="{CHART_WIDTH}" y2="{y - ROW_PAD / 2:.0f}" stroke="#999"/>')
        parts.append(f'<text x="0" y="{y + row_h / 2:.0f}" font-weight="{"bold" if name == "total" else "normal"}">'
                     f'{html.escape(name[:22])}</text>')
        for j, q in enumerate(QUANTILES):
            ly = y + j * LINE_H + LINE_H / 2
            color = GREEN if a[q] < b[q] else RED if a[q] > b[q] else GREY
            tip = f"{name} {q[:3]}: {fmt(b[q])} ms before, {fmt(a[q])} ms after (x{a[q] / b[q]:.3g})"
            parts.append(f'<g><title>{html.escape(tip)}</title>'
                         f'<text x="{lat_x0 - 6}" y="{ly + 4:.1f}" text-anchor="end" font-size="10">{q[:3]}</text>'
                         f'<line x1="{lx(b[q]):.1f}" y1="{ly:.1f}" x2="{lx(a[q]):.1f}" y2="{ly:.1f}" stroke="{color}" stroke-width="2"/>'
                         f'<circle cx="{lx(b[q]):.1f}" cy="{ly:.1f}" r="4" fill="{GREY}"/>'
                         f'<circle cx="{lx(a[q]):.1f}" cy="{ly:.1f}" r="4" fill="{color}"/></g>')
        bar_h = (row_h - ROW_PAD) / 2 - 1
        for k, (value, color) in enumerate(((b.get("rps") or 0.0, GREY), (a.get("rps") or 0.0, BLUE))):
            w = max(1.0, value / rps_top * (rps_x1 - rps_x0))
            by = y + k * (bar_h + 2)
            parts.append(f'<rect x="{rps_x0}" y="{by:.1f}" width="{w:.1f}" height="{bar_h:.1f}" fill="{color}"/>'
                         f'<text x="{rps_x0 + w + 4:.1f}" y="{by + bar_h - 1:.1f}" font-size="10">{fmt(value)}</text>')
    parts.append(f'<text x="0" y="{height - 8:.0f}">grey = baseline; after: green = faster, red = slower, '
                 'blue = throughput after. Hover a line for its numbers.</text></svg>')
    return "".join(parts)


def _pareto_axes(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """(x, y) objective names of the search: cost across, the other objective up; None without two."""
    front = result.get("pareto") or []
    names = list(front[0]["objectives"]) if front else []
    if len(names) < 2:
        return None
    x = COST_OBJECTIVE if COST_OBJECTIVE in names else names[1]
    return x, next(n for n in names if n != x)


def svg_pareto(result: Mapping[str, Any]) -> str:
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

    parts = [svg_open(CHART_WIDTH, height + 50),
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#ccc"/>']
    for p in points:
        cx, cy = px(p["objectives"][x_name], p["objectives"][y_name])
        color = GREY if p.get("feasible", True) else RED
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}">'
                     f'<title>{html.escape(json.dumps(p["config"]))}</title></circle>')
    stairs = sorted((p["objectives"][x_name], p["objectives"][y_name]) for p in front)
    path = " ".join(f"{'M' if i == 0 else 'L'}{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}" for i, (x, y) in enumerate(stairs))
    parts.append(f'<path d="{path}" fill="none" stroke="{GREEN}" stroke-width="1.5"/>')
    for p in front:
        cx, cy = px(p["objectives"][x_name], p["objectives"][y_name])
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{GREEN}"/>')
        if p.get("chosen"):
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="10" fill="none" stroke="{BLUE}" stroke-width="2"/>'
                         f'<text x="{cx + 13:.1f}" y="{cy + 4:.1f}">chosen</text>')
    for value in (y0, (y0 + y1) / 2, y1):
        parts.append(f'<text x="{left - 6}" y="{px(x0, value)[1] + 4:.1f}" text-anchor="end">{fmt(value)}</text>')
    for value in sorted({x for x, _ in stairs} | {min(xs), max(xs)}):
        parts.append(f'<text x="{px(value, y0)[0]:.1f}" y="{top + height + 16}" text-anchor="middle">{fmt(value)}</text>')
    parts.append(f'<text x="{left}" y="{top + height + 38}">{html.escape(x_name)} across, {html.escape(y_name)} up: '
                 f'grey = measured, red = broke a quality threshold, green = Pareto front</text></svg>')
    return "".join(parts)
