"""Findings as sentences a person reads: what was seen, where, and the numbers that show it.

One template per finding kind (DESIGN.md's list) reads the evidence keys its agent writes; a
finding whose evidence lacks them, or of a kind without a template, gets the general sentence
(agent, kind, location and its first few numbers). Numbers are the evidence's own, trimmed
(tasks/results/evidence_items.py ``num``); estimates say so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tasks.results.evidence_items import flatten, num, shorten

STATEMENT_CHARS = 90
GENERAL_NUMBERS = 4


def pct(v: Any) -> str:
    return f"{float(v):.0%}" if float(v) >= 0.01 else f"{float(v):.2%}"


def count(v: Any) -> str:
    """A count: 50.0 -> 50."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else num(v)


def plural(n: Any, noun: str) -> str:
    return f"{count(n)} {noun}{'' if n == 1 else 's'}"


def _on(f: Mapping[str, Any]) -> str:
    endpoint = f.get("endpoint")
    return f" on {endpoint}" if endpoint and endpoint != f.get("location") else ""


def _code(text: Any) -> str:
    return f"“{shorten(text, STATEMENT_CHARS)}”"


def _estimate(f: Mapping[str, Any]) -> str:
    g = f.get("estimated_gain") or {}
    if isinstance(g.get("ms"), int | float):
        basis = str(g.get("basis") or "")
        where = " at 1.6 Mbit/s" if basis.startswith(("ms at 1.6 Mbit/s", "per repeat view, ms at 1.6 Mbit/s")) else ""
        return f" Fixing it would save about {num(g['ms'])} ms{where} (an estimate)."
    return ""


def missing_index(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    w = ev["whatif"]
    statements = len(ev.get("statements") or []) or 1
    if "before_ms" in w:  # SQLite: timed on a copy
        whatif = f"On a copy of the database an index cut them from {num(w['before_ms'])} to {num(w['after_ms'])} ms per call."
    else:  # PostgreSQL: HypoPG, the planner's estimate
        whatif = (f"With a hypothetical index the planner's cost fell from {num(w['cost_before'])} to "
                  f"{num(w['cost_after'])} (an estimate, not a timing).")
    return (f"{plural(statements, 'statement')} read {f['location']} without an index{_on(f)}: {ev['calls']} calls, "
            f"mean {num(ev['mean_ms'])} ms, {pct(ev['db_time_share'])} of the database time. {whatif}")


def slow_query(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    site = f" from {ev['call_site']}" if ev.get("call_site") else ""
    p95 = f", p95 {num(ev['p95_ms'])} ms" if ev.get("p95_ms") is not None else ""
    return (f"{_code(ev['statement'])}{site} took {pct(ev['share'])} of the database time{_on(f)}: "
            f"{ev['calls']} calls, mean {num(ev['mean_ms'])} ms{p95}.")


def n_plus_one(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    per = ev["count_per_request"]
    saved = (f.get("estimated_gain") or {}).get("estimated_ms_per_request_saved")
    tail = f" One batched statement would save about {num(saved)} ms per request (an estimate)." if saved else ""
    return (f"{f['location']} runs {_code(ev['statement'])} {count(per['median'])} times per request (median, "
            f"up to {count(per['max'])}){_on(f)}, in {ev['requests_with_repeats']} of {ev['endpoint_requests']} "
            f"requests.{tail}")


def cpu_saturation(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"The target kept its usable CPU {pct(ev['share_of_usable'])} busy on average ({num(ev['cpu_pct_mean'])}% "
            f"of a core, {plural(ev['workers'], 'worker')} on {plural(ev['cores'], 'core')})"
            + (f"; with the time spent waiting to run, demand was {pct(ev['demand_share_of_usable'])} of it."
               if ev.get("demand_share_of_usable") is not None else "."))


def hot_function(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    line = (ev.get("hot_lines") or [{}])[0]
    where = f", most at line {line['line']}: {_code(line['source'])}" if line.get("source") else ""
    return (f"{f['location']} held {pct(ev['share_self'])} of the target's CPU samples "
            f"({ev['samples']} of {ev['total_samples']}){where}.")


def lock_contention(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"Readers waited for the database lock: {ev['reading']}. They waited {num(ev['waited_ms'])} ms in all, "
            f"{pct(ev['db_time_share'])} of the database time.")


def uncompressed_response(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    size = ev.get("decoded_bytes", ev.get("mean_bytes"))
    gz = f"; gzip makes it {num(ev['gzip_bytes'])}" if ev.get("gzip_bytes") else ""
    return f"{f['location']} is sent uncompressed ({num(size)} bytes{gz}){_on(f)}.{_estimate(f)}"


def large_payload(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    if "mean_bytes" in ev:
        return (f"Responses of {f['location']} average {num(ev['mean_bytes'])} bytes (up to {num(ev['max_bytes'])}); "
                f"they are {pct(ev['share_of_requests'])} of the requests.")
    return f"{f['location']} weighs {num(ev['transfer_bytes'])} bytes on the wire{_on(f)}.{_estimate(f)}"


def no_cache_headers(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"{f['location']} carries no cache lifetime, so a repeat view fetches or revalidates its "
            f"{num(ev['transfer_bytes'])} bytes again{_on(f)}.{_estimate(f)}")


def render_blocking(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    pages = ", ".join(ev.get("pages") or []) or "the page"
    at_reference = (f.get("estimated_gain") or {}).get("ms_at_reference")
    slow = f", about {num(at_reference)} ms at 1.6 Mbit/s (an estimate)" if at_reference else ""
    return f"{f['location']} blocks the first render of {pages}: {num(ev['fetch_ms'])} ms to fetch here{slow}."


def unused_index(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"No plan of the {ev.get('statements_explained', 0)} statements explained used index {ev['index']} "
            f"on {f['location']}; every write still pays for it.")


def memory_growth(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"The target's memory grew steadily from {num(ev['rss_start_mb'])} to {num(ev['rss_end_mb'])} MB over "
            f"{num(ev['span_s'])} s ({num(ev['slope_mb_per_min'])} MB/min, r² {num(ev['r2'])}).")


def blocking_call(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"{f['location']} blocked the event loop {pct(ev['loop_blocked_share'])} of the time"
            + (f", at {_code(ev['source'])}" if ev.get("source") else "") + ".")


def superlinear_complexity(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    sizes, ms = ev["sizes"], ev["best_ms"]
    return (f"{f['location']} grows like n^{num(ev['exponent'])}{_on(f)}: {num(ms[0])} ms at n={sizes[0]}, "
            f"{num(ms[-1])} ms at n={sizes[-1]}.")


def db_time_share(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    return (f"{f['location']} spends {pct(ev['db_share'])} of its server time in the database "
            f"({num(ev['db_calls_per_request'])} calls, {num(ev['db_ms_per_request'])} ms per request, from its traces).")


def reading(f: Mapping[str, Any], ev: Mapping[str, Any]) -> str:
    """Findings whose agent already wrote the sentence (pool_saturation, framework_overhead)."""
    text = ev.get("reading") or ev["note"]
    return f"{f['location']}{_on(f)}: {text}."


TEMPLATES: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str]] = {
    "missing_index": missing_index, "slow_query": slow_query, "n_plus_one": n_plus_one,
    "cpu_saturation": cpu_saturation, "hot_function": hot_function, "lock_contention": lock_contention,
    "uncompressed_response": uncompressed_response, "large_payload": large_payload,
    "no_cache_headers": no_cache_headers, "render_blocking": render_blocking, "unused_index": unused_index,
    "memory_growth": memory_growth, "blocking_call": blocking_call, "superlinear_complexity": superlinear_complexity,
    "db_time_share": db_time_share, "pool_saturation": reading, "framework_overhead": reading,
}


def general(f: Mapping[str, Any]) -> str:
    scalars: list[str] = []
    for key, value in (f.get("evidence") or {}).items():
        flatten(key, value, scalars, [], STATEMENT_CHARS)
    numbers = ", ".join(s.replace("=", " ", 1) for s in scalars[:GENERAL_NUMBERS])
    return (f"The {f.get('agent')} agent found {str(f.get('kind')).replace('_', ' ')} at {f.get('location')}{_on(f)}"
            + (f" ({numbers})." if numbers else "."))


def finding_sentence(f: Mapping[str, Any]) -> str:
    """One or two sentences for a finding (a ``--json`` finding dict)."""
    template = TEMPLATES.get(str(f.get("kind")))
    if template is not None:
        try:
            return template(f, f.get("evidence") or {})
        except (KeyError, IndexError, TypeError, ValueError):
            pass  # evidence of another shape (another agent's, an older run's): the general sentence
    return general(f)
