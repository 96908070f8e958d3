"""Findings from the py-spy profiles: hot functions of the target's own code, blocked event loops.

``hot_function``: an own function's *attributed* share of the CPU samples (samples whose
deepest own frame it is: its own lines plus the library calls it makes). A function whose
samples sit almost all inside database driver calls (a query wrapper) is left to the database
agent, which names the statements.

``blocking_call``: the event-loop thread sampled inside the target's code while *idle*. The
wall-clock bursts (``--idle``) see the loop thread at every tick; the CPU bursts only while
it runs. For one site (own caller, leaf frame) wall share minus CPU share is the share of the
loop's time it sat blocked there: a synchronous sleep, socket or database call on the loop. A
binomial test on the two sample counts keeps sampling noise out. The counts are the run's so far
(``pool_loops``): one short window has a single wall-clock burst of ~40 loop ticks, too few
for a 20 ms blocking call to clear the test every time.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from scipy import stats

from tasks.agents.application.stacks import source_line
from tasks.findings import Finding, Severity

AGENT = "application"
HOT_MIN_SHARE = 0.05  # attributed share of CPU samples
HOT_MIN_SAMPLES = 5
HOT_MAX_FINDINGS = 5
# a function whose attributed samples sit this much inside database driver calls is database time
DB_BOUND_SHARE = 0.8
DB_CALL = re.compile(r"sqlcapture|pgcapture|sqlite3|psycopg|asyncpg|sqlalchemy|pymysql|:\w*(execute|fetch)\w*$", re.I)
BLOCKING_MIN_SHARE = 0.05  # share of the loop thread's time blocked at one caller
BLOCKING_MIN_SAMPLES = 5
BLOCKING_MAX_P = 0.01  # wall samples must exceed what the CPU bursts' rate explains, this surely
SHARE_SEVERITY = (0.3, 0.1)  # high, medium
LIKELY_BLOCKING = re.compile(r"\bsleep\(|\.recv|\.read|\.execute|\.fetch|requests\.|urlopen|\.connect\(|"
                             r"\.acquire\(|\.wait\(|subprocess\.|\.result\(|\.join\(")


def find_hot_functions(observed: dict[str, Any]) -> list[Finding]:
    profile = observed.get("cpu_profile") or {}
    total = int(profile.get("samples") or 0)
    if total == 0:
        return []
    out: list[Finding] = []
    own = [f for f in profile.get("functions", []) if f["own"]]
    for fn in sorted(own, key=lambda f: -f["attributed"]):
        share = fn["attributed"] / total
        if share < HOT_MIN_SHARE or fn["attributed"] < HOT_MIN_SAMPLES or len(out) >= HOT_MAX_FINDINGS:
            break
        in_db = sum(n for callee, n in fn["calls_into"] if DB_CALL.search(callee))
        if in_db >= DB_BOUND_SHARE * fn["attributed"]:
            continue  # its time is the database's (a query wrapper): the database agent reports the statements
        evidence = {
            "samples": fn["attributed"], "total_samples": total, "share_attributed": round(share, 3),
            "share_self": round(fn["self"] / total, 3), "share_inclusive": round(fn["inclusive"] / total, 3),
            "file": fn["file"], "hot_lines": [{"line": line, "samples": n, "source": source_line(fn["file"], line)}
                                              for line, n in fn["lines"]],
            "calls_into": [{"function": name, "samples": n} for name, n in fn["calls_into"]],
            "profiler": observed.get("profiler_settings"),
        }
        out.append(Finding(AGENT, "hot_function", fn["location"], _severity(share), evidence,
                           {"share_of_cpu": round(share, 3)}))
    return out


def pool_loops(loops: list[dict[str, Any]]) -> dict[str, Any]:
    """Several windows' loop profiles as one: samples, burst seconds and each site's count summed."""
    out: dict[str, Any] = {"cpu": {"samples": 0, "threads": [], "sites": {}},
                           "wall": {"samples": 0, "threads": [], "sites": {}},
                           "cpu_burst_s": 0.0, "wall_burst_s": 0.0, "windows": len(loops)}
    for loop in loops:
        for kind in ("cpu", "wall"):
            part, into = loop.get(kind) or {}, out[kind]
            into["samples"] += int(part.get("samples") or 0)
            into["threads"] = part.get("threads") or into["threads"]  # thread ids change with a restart
            for key, site in (part.get("sites") or {}).items():
                into["sites"].setdefault(key, {**site, "count": 0})["count"] += site["count"]
        out["cpu_burst_s"] += float(loop.get("cpu_burst_s") or 0)
        out["wall_burst_s"] += float(loop.get("wall_burst_s") or 0)
    return out


def find_blocking_calls(observed: dict[str, Any]) -> list[Finding]:
    loop = observed.get("loop") or {}
    wall, cpu = loop.get("wall") or {}, loop.get("cpu") or {}
    wall_total = int(wall.get("samples") or 0)
    threads = len(wall.get("threads") or []) or len(cpu.get("threads") or [])
    wall_s, cpu_s = float(loop.get("wall_burst_s") or 0), float(loop.get("cpu_burst_s") or 0)
    if wall_total == 0 or threads == 0 or wall_s <= 0 or cpu_s <= 0:
        return []
    cpu_ticks = wall_total / wall_s * cpu_s  # loop-thread ticks the CPU bursts had (at the achieved rate)
    cpu_sites = cpu.get("sites") or {}
    by_caller: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, site in (wall.get("sites") or {}).items():
        by_caller[site["caller"]].append({**site, "cpu_count": cpu_sites.get(key, {}).get("count", 0)})
    for key, site in cpu_sites.items():  # sites only the CPU bursts saw still count against the caller
        if key not in (wall.get("sites") or {}):
            by_caller[site["caller"]].append({**site, "count": 0, "cpu_count": site["count"]})
    out: list[Finding] = []
    for caller, sites in by_caller.items():
        wall_n, cpu_n = sum(s["count"] for s in sites), sum(s["cpu_count"] for s in sites)
        wall_share, cpu_share = wall_n / wall_total, cpu_n / cpu_ticks
        blocked = wall_share - cpu_share
        if blocked < BLOCKING_MIN_SHARE or wall_n < BLOCKING_MIN_SAMPLES:
            continue
        # same per-tick rate in both kinds of burst (never idle) would give wall_n ~ Binomial(n, p0)
        p_value = stats.binomtest(wall_n, wall_n + cpu_n, wall_total / (wall_total + cpu_ticks),
                                  alternative="greater").pvalue
        if p_value >= BLOCKING_MAX_P:
            continue
        for s in sites:
            s["idle_share"] = s["count"] / wall_total - s["cpu_count"] / cpu_ticks
        sites.sort(key=lambda s: -s["idle_share"])
        top = sites[0]
        evidence = {
            "loop_blocked_share": round(blocked, 3), "loop_wall_share": round(wall_share, 3),
            "loop_cpu_share": round(cpu_share, 3), "p_value": float(f"{p_value:.3g}"),
            "wall_samples": wall_n, "cpu_samples": cpu_n, "loop_wall_samples": wall_total,
            "in_async_def": any(s["async"] for s in sites), "call_line": top["caller_line"],
            "source": top["source"], "leaf": top["leaf"],
            "looks_like_blocking_io": bool(LIKELY_BLOCKING.search(top["source"] or "")),
            "sites": [{"leaf": s["leaf"], "source": s["source"], "wall_samples": s["count"],
                       "cpu_samples": s["cpu_count"]} for s in sites[:3]],
            "loop_threads": threads, "windows": loop.get("windows", 1),
            "target_cpu_pct_mean": observed.get("cpu_pct_mean"),
            "cores": observed.get("cores"),
        }
        out.append(Finding(AGENT, "blocking_call", caller, _severity(blocked), evidence,
                           {"share_of_loop_time": round(blocked, 3)}))
    return sorted(out, key=lambda f: -f.evidence["loop_blocked_share"])


def _severity(share: float) -> Severity:
    return "high" if share >= SHARE_SEVERITY[0] else "medium" if share >= SHARE_SEVERITY[1] else "low"
