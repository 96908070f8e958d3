"""The pieces of an evidence bundle: each part of a run's result as an item at levels of detail.

An ``Item`` is one thing the bundle may hold (the header, a change, a group of findings, an
endpoint row, capacity, costs), rendered at decreasing levels of detail, most detailed first.
Numbers are kept at every level; long SQL / plan / stack excerpts are cut first; findings of
one agent, kind and severity are merged into one group. Each item carries its section and its
priority; tasks/results/evidence.py packs them into the token budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.findings import SEVERITY_RANK

EXCERPT_CHARS = (160, 70)  # a long string (SQL, plan, stack) at full / medium detail
LIST_ITEMS = 3  # list elements kept at full detail
MEDIUM_FIELDS = 6  # evidence numbers kept at medium detail
SHORT_TEXT = 40  # a string this short is a value, not an excerpt
MERGED_NAMES = 3  # members named in a group's one-line form
GROUP_MEMBERS = 8  # members listed in a finding group's shortened list
TOP_ENDPOINTS = 3  # endpoint rows packed before the findings; the rest after them
EVIDENCE_SKIP = frozenset({"headers", "distribution"})
GAIN_MS_KEYS = ("estimated_ms_per_request_saved", "ms_saved", "ms")
MS_PER_SHARE = 1000.0  # ranking only: 1 s of estimated saving weighs like 100% of DB time
P_HEADER, P_KEPT, P_TOP_FINDING, P_TOP_ENDPOINTS, P_CAPACITY = 0, 1, 2, 3, 4  # lower goes first
P_HIGH_FINDINGS, P_CHANGES, P_FINDINGS, P_ENDPOINTS, P_CONTEXT, P_COSTS = 5, 6, 7, 8, 9, 10
Level = tuple[str, int]  # (text, how many things it covers)


@dataclass
class Item:
    section: str
    priority: int
    levels: list[Level]  # most detailed first
    noun: str  # how the footer names what is left out, e.g. "low-severity finding"
    count: int = 1  # things the item stands for (a finding group's members)
    level: int | None = None  # the chosen level; None = left out

    @property
    def covered(self) -> int:
        return 0 if self.level is None else self.levels[self.level][1]


# -- formatting ------------------------------------------------------------------------------
def num(v: Any) -> str:
    """Numbers kept, digits trimmed: 16872.4 -> 16872, 835.686 -> 835.7, 0.04929 -> 0.0493."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "-" if v is None else str(v)
    if isinstance(v, int) or not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else "0" if v == 0 else f"{v:.3g}"


def pct(v: Any) -> str:
    return f"{v * 100:.2g}%" if isinstance(v, int | float) and not isinstance(v, bool) else num(v)


def shorten(text: Any, limit: int) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def arrow(before: Any, after: Any, fmt: Callable[[Any], str] = num) -> str:
    return f"{fmt(before)}->{fmt(after)}"


def ratio_of(before: Any, after: Any) -> str:
    ok = isinstance(before, int | float) and isinstance(after, int | float) and before
    return f"x{num(after / before)}" if ok else "-"


def flatten(key: str, value: Any, scalars: list[str], texts: list[str], limit: int) -> None:
    """Evidence as ``key=number`` pairs (kept) and excerpts (cut to ``limit`` characters)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars an agent left in its evidence
        value = value.tolist()
    if key.split(".")[-1] in EVIDENCE_SKIP or value in (None, [], {}, ""):
        return
    if isinstance(value, bool | int | float):
        scalars.append(f"{key}={num(value)}")
    elif isinstance(value, str):
        (scalars if len(value) <= SHORT_TEXT else texts).append(f"{key}={shorten(value, limit)}")
    elif isinstance(value, dict) and all(len(str(k)) <= SHORT_TEXT for k in value):
        for k, v in value.items():
            flatten(f"{key}.{k}", v, scalars, texts, limit)
    else:
        if isinstance(value, dict):  # keyed by long strings (SQL -> plan): one excerpt each
            value = [f"{shorten(k, SHORT_TEXT)}: {compact(v)}" for k, v in value.items()]
        seen = list(dict.fromkeys(compact(v) for v in value))  # duplicates merged
        more = f" (+{len(seen) - LIST_ITEMS} more)" if len(seen) > LIST_ITEMS else ""
        texts.append(f"{key}=" + shorten(" | ".join(seen[:LIST_ITEMS]), limit) + more)


def compact(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " / ".join(compact(v) for v in value)
    return value if isinstance(value, str) else num(value)


def evidence_text(evidence: dict[str, Any] | None, detail: int) -> str:
    scalars: list[str] = []
    texts: list[str] = []
    for key, value in (evidence or {}).items():
        flatten(key, value, scalars, texts, EXCERPT_CHARS[min(detail, 1)])
    if detail == 0:
        return " ".join(scalars + [f"[{t}]" for t in texts])
    return " ".join(scalars[:MEDIUM_FIELDS] + [f"[{t}]" for t in texts[:1]])


def gain_text(gain: dict[str, Any] | None, limit: int | None = None) -> str:
    """The estimated gain, time savings first; with ``limit``, only that many numbers."""
    scalars: list[str] = []
    texts: list[str] = []
    preferred = {k: i for i, k in enumerate((*GAIN_MS_KEYS, "db_time_share"))}
    for key, value in sorted((gain or {}).items(), key=lambda kv: preferred.get(kv[0], len(preferred))):
        flatten(key, value, scalars if limit is None or not isinstance(value, str) else [], texts,
                EXCERPT_CHARS[1])
    return ", ".join(scalars + texts) if limit is None else ", ".join(scalars[:limit])


# -- items -----------------------------------------------------------------------------------
def header_item(result: dict[str, Any]) -> Item:
    before = (result.get("baseline") or {}).get("total") or {}
    after = (result.get("final") or {}).get("total") or {}
    title = f"# Evidence: run {shorten(result.get('run_id'), 40)}, target {shorten(result.get('target'), 40)}"
    title += f" ({result.get('scope') or '-'})"
    status, why = result.get("status") or "-", result.get("stop_reason")
    goals = result.get("goals") or []
    met = f"goals met {sum(1 for g in goals if g.get('met'))}/{len(goals)}" if goals else ""
    unmet = [shorten(g.get("expr"), 40) for g in goals if not g.get("met")][:3]
    total = (f"total: p95 {arrow(before.get('p95_ms'), after.get('p95_ms'))} ms "
             f"({ratio_of(before.get('p95_ms'), after.get('p95_ms'))}), rps {arrow(before.get('rps'), after.get('rps'))}, "
             f"errors {arrow(before.get('error_rate'), after.get('error_rate'), pct)}") if before or after else ""
    noise = (result.get("noise_floor") or {}).get("p95_rel")
    full = [title, f"status: {status}" + (f" ({shorten(why, 200)})" if why else ""),
            met and met + ": " + "; ".join(
                f"{shorten(g.get('expr'), 60)} {'met' if g.get('met') else 'NOT met'} ({num(g.get('value'))})" for g in goals),
            total and total + f", p99 {arrow(before.get('p99_ms'), after.get('p99_ms'))} ms, "
            f"requests {arrow(before.get('requests'), after.get('requests'))}",
            f"noise floor: p95 differs by {pct(noise)} between identical windows" if noise is not None else "",
            "final config: " + shorten(compact(result["config"]), 300) if result.get("config") else ""]
    short = [f"{shorten(title, 120)}: {status}", met + (f"; not met: {', '.join(unmet)}" if unmet else ""),
             total + (f"; p95 noise floor {pct(noise)}" if noise is not None else "")]
    return Item("header", P_HEADER, [("\n".join(filter(None, full)), 1), ("\n".join(filter(None, short)), 1)], "header")


def endpoint_items(result: dict[str, Any]) -> list[Item]:
    """Rows ranked: endpoints named by a goal, then changed by a kept change, then with a high
    finding, then by their share of the baseline's time (requests x mean)."""
    before = (result.get("baseline") or {}).get("endpoints") or {}
    after = (result.get("final") or {}).get("endpoints") or {}
    named = {m for g in result.get("goals") or [] for m in re.findall(r"\[([^\]]+)\]", str(g.get("expr")))}
    changed = {(c.get("effect") or {}).get("endpoint") for c in result.get("changes") or [] if c.get("status") == "kept"}
    severe = {f.get("endpoint") for f in result.get("findings") or [] if f.get("severity") == "high"}

    def rank(name: str) -> tuple[int, float]:
        b = before.get(name) or after.get(name) or {}
        time_share = (b.get("requests") or 0) * (b.get("mean_ms") or b.get("p95_ms") or 0)
        return (-(4 * (name in named) + 2 * (name in changed) + (name in severe)), -time_share)

    items = []
    for i, name in enumerate(sorted(set(before) | set(after), key=rank)):
        b, a = before.get(name) or {}, after.get(name) or {}
        row = (f"{shorten(name, 60)} | {arrow(b.get('p95_ms'), a.get('p95_ms'))} | {ratio_of(b.get('p95_ms'), a.get('p95_ms'))}"
               f" | {arrow(b.get('rps'), a.get('rps'))} | {arrow(b.get('error_rate'), a.get('error_rate'), pct)}")
        items.append(Item("endpoints", P_TOP_ENDPOINTS if i < TOP_ENDPOINTS else P_ENDPOINTS, [(row, 1)], "endpoint row"))
    return items


def change_items(changes: list[dict[str, Any]]) -> list[Item]:
    """Kept changes first (packed right after the header), then reverted, then failed."""
    items = []
    for c in sorted(changes, key=lambda c: {"kept": 0, "reverted": 1}.get(str(c.get("status")), 2)):
        e = c.get("effect") or {}
        ci = e.get("ci95") or []
        ci_text = f" 95% CI [{num(ci[0])}, {num(ci[1])}]" if len(ci) == 2 else ""
        effect = (f"{e.get('metric', 'p95_ms')} on {e.get('endpoint') or 'all'} x{num(e['ratio'])}{ci_text}"
                  if e.get("ratio") is not None else "no measured effect")
        head, desc, why = f"- {str(c.get('status')).upper()} {c.get('kind')}", c.get("description"), c.get("reason")
        stats = (f", {arrow(e.get('before'), e.get('after'))}, p={num(e.get('p_value'))}, "
                 f"n={num(e.get('n_before'))}/{num(e.get('n_after'))}") if e.get("ratio") is not None else ""
        full = f"{head}: {shorten(desc, EXCERPT_CHARS[0])}; {effect}{stats}; why: {shorten(why, EXCERPT_CHARS[0])}"
        levels = [(full, 1), (f"{head}: {shorten(desc, 60)}; {effect}; why: {shorten(why, 60)}", 1),
                  (f"{head}: {shorten(desc, 50)}; {effect.replace(' 95% CI', '')}", 1)]
        kept = c.get("status") == "kept"
        items.append(Item("changes", P_KEPT if kept else P_CHANGES, levels, "change"))
    return items


def gain_score(finding: dict[str, Any]) -> float:
    """One number to rank findings of the same severity (a heuristic across agents' units)."""
    g = finding.get("estimated_gain") or {}
    share = g.get("db_time_share", g.get("share", (finding.get("evidence") or {}).get("db_time_share")))
    if isinstance(share, int | float):
        before, after = g.get("ms_per_call_before"), g.get("ms_per_call_after")
        if isinstance(before, int | float) and isinstance(after, int | float) and before > 0:
            return share * max(0.0, 1 - after / before)
        return float(share)
    ms = next((g[k] for k in GAIN_MS_KEYS if isinstance(g.get(k), int | float)), 0.0)
    return ms / MS_PER_SHARE


def finding_items(findings: list[dict[str, Any]]) -> list[Item]:
    """One item per (agent, kind, severity) group; groups ranked by their best member."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for f in sorted(findings, key=lambda f: (-SEVERITY_RANK.get(str(f.get("severity")), -1), -gain_score(f))):
        groups.setdefault((str(f.get("agent")), str(f.get("kind")), str(f.get("severity"))), []).append(f)
    return [Item("findings", P_TOP_FINDING if i == 0 else P_HIGH_FINDINGS if sev == "high" else P_FINDINGS,
                 group_levels(agent, kind, sev, members), f"{sev}-severity finding", len(members))
            for i, ((agent, kind, sev), members) in enumerate(groups.items())]


def group_levels(agent: str, kind: str, sev: str, members: list[dict[str, Any]]) -> list[Level]:
    """Every member (full, then medium detail), the first ``GROUP_MEMBERS``, the first few merged
    on one line, the best one alone."""
    n, head = len(members), f"- **{kind}** [{sev}, {agent}]"
    levels = []
    for detail, k in ((0, n), (1, n), (1, GROUP_MEMBERS)):
        shown = members[:k]
        if n == 1:
            levels.append((f"{head} {finding_line(shown[0], detail)}", 1))
        else:
            lines = "\n".join(f"  - {finding_line(f, detail)}" for f in shown)
            levels.append((f"{head} x{n}:\n{lines}" + (f"\n  - +{n - k} more" if n > k else ""), len(shown)))
    names = ", ".join(f"{finding_where(f)} ({gain_text(f.get('estimated_gain'), 2)})" for f in members[:MERGED_NAMES])
    rest = f", +{n - MERGED_NAMES} more" if n > MERGED_NAMES else ""
    levels.append((f"{head}{f' x{n}' if n > 1 else ''}: {names}{rest}", min(n, MERGED_NAMES)))
    best = members[0]
    levels.append((f"- {kind} [{sev}]: {shorten(best.get('location'), 40)} ({gain_text(best.get('estimated_gain'), 1)})"
                   + (f" +{n - 1} more" if n > 1 else ""), 1))
    return [lv for j, lv in enumerate(levels) if lv not in levels[:j]]


def finding_where(f: dict[str, Any]) -> str:
    endpoint = f.get("endpoint")
    on = f" on {shorten(endpoint, 40)}" if endpoint and endpoint != f.get("location") else ""
    return f"{shorten(f.get('location'), 60)}{on}"


def finding_line(f: dict[str, Any], detail: int) -> str:
    gain = f.get("estimated_gain")
    if detail == 0:
        return f"{finding_where(f)} | est. gain: {gain_text(gain)}\n    evidence: {evidence_text(f.get('evidence'), 0)}"
    return f"{finding_where(f)} | est. gain: {gain_text(gain, 3)} | {evidence_text(f.get('evidence'), 1)}"


def context_items(result: dict[str, Any]) -> list[Item]:
    """Capacity (when a step-load ran), the Pareto front (when a search ran), drift, cost tracking."""
    items = []
    if cap := result.get("capacity"):
        rec = cap.get("recommendation") or {}
        peak = (f"peak {num(cap.get('peak_rps'))} rps at {num(cap.get('peak_concurrency'))} users"
                + ("" if cap.get("peak_within_measured_range", True) else " (extrapolated)"))
        advice = (f"for {num(rec.get('goal_rps'))} rps: {num(rec.get('workers'))} workers x "
                  f"{num(rec.get('instances'))} instances, {num(rec.get('usd_per_hour'))} USD/h")
        fit = " ".join(f"{k}={num(cap.get(k))}" for k in ("sigma", "kappa", "lambda", "r2", "n_points"))
        full = f"- capacity (USL {fit}): {peak}; {advice}" + (f"; {shorten(rec['reason'], 70)}" if rec.get("reason") else "")
        items.append(Item("context", P_CAPACITY, [(full, 1), (f"- capacity: {peak}; {advice}", 1)], "capacity"))
    if pareto := result.get("pareto") or []:
        points = [f"{compact(p.get('config') or {})} -> {compact(p.get('objectives') or {})}"
                  + (" (chosen)" if p.get("chosen") else "") for p in pareto]
        chosen = [pt for pt, p in zip(points, pareto, strict=True) if p.get("chosen")]
        full = f"- pareto front ({len(pareto)} points): " + "; ".join(points[:GROUP_MEMBERS])
        short = f"- pareto front: {len(pareto)} points" + (f"; {chosen[0]}" if chosen else "")
        items.append(Item("context", P_CONTEXT, [(full, 1), (short, 1)], "pareto front"))
    for key in ("drift", "cost_tracking", "phase_errors"):
        if value := result.get(key):
            scalars: list[str] = []
            texts: list[str] = []
            flatten(key, value, scalars, texts, EXCERPT_CHARS[1])
            full = "- " + shorten(" ".join(scalars + texts), 400)
            items.append(Item("context", P_CONTEXT, [(full, 1), (shorten(full, 120), 1)], key.replace("_", " ")))
    return items


def costs_items(result: dict[str, Any]) -> list[Item]:
    costs = result.get("costs") or {}
    text = "- " + ", ".join(f"{k}={num(v)}" for k, v in costs.items()) + " (s = seconds; tokens = LLM tokens)"
    return [Item("costs", P_COSTS, [(text, 1)], "costs")] if costs else []
