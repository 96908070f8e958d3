"""Disjoint CPUs for the target and for everything else (load generator, toolkit, agents).

On a shared machine the scheduler moves the target's threads across CPUs and lets the load
generator, the toolkit's own threads (the Prefect API server, the store, the agents) run on
the CPU the target just warmed. During a window, ``pinned`` puts the target's process tree on
the upper half of the allowed CPUs and every other process of the toolkit's tree (Locust, started
during the window, inherits it) on the lower half, and lets both go afterwards.

Whether it helps is measured, not assumed (benchmarks/pinning.py: the A/A spread with and
without, windows interleaved). ``load.pin_cpus`` in the spec: ``auto`` (the default) pins when
the machine has at least AUTO_MIN_CPUS CPUs, where the target keeps two or more of its own;
``true`` / ``false`` force it. On 2 CPUs pinning gives the target one: it then measures a
one-CPU deployment, and a ``workers`` knob cannot help it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

AUTO_MIN_CPUS = 4
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ProcessLookupError, PermissionError)


@dataclass(frozen=True)
class CpuPlan:
    target: frozenset[int]
    others: frozenset[int]


PIN_ENV = "PERFAGENTS_PIN_CPUS"  # auto | true | false: overrides the spec (benchmarks/pinning.py)


def pin_mode(spec: object) -> str | bool:
    """The pinning mode: PERFAGENTS_PIN_CPUS if set, else the spec's ``load.pin_cpus``."""
    env = os.environ.get(PIN_ENV, "").strip().lower()
    if env in ("auto", "true", "false"):
        return {"true": True, "false": False}.get(env, "auto")
    return getattr(getattr(spec, "load", None), "pin_cpus", "auto")


def plan_cpus(mode: str | bool = "auto", allowed: Iterable[int] | None = None) -> CpuPlan | None:
    """The CPUs of each side, or None when pinning is off (or the machine has one CPU)."""
    cpus = sorted(allowed if allowed is not None else os.sched_getaffinity(0))
    if mode is False or mode == "false" or len(cpus) < 2:
        return None
    if mode == "auto" and len(cpus) < AUTO_MIN_CPUS:
        return None
    half = len(cpus) // 2
    return CpuPlan(target=frozenset(cpus[half:]), others=frozenset(cpus[:half]))


def _threads(pid: int) -> list[int]:
    try:
        return [t.id for t in psutil.Process(pid).threads()]
    except _GONE:
        return []


def set_cpus(pids: Iterable[int], cpus: Iterable[int]) -> int:
    """Pin every thread of the given processes; the number of threads pinned."""
    cpus = set(cpus)
    done = 0
    for pid in pids:
        for tid in _threads(pid):
            try:
                os.sched_setaffinity(tid, cpus)
                done += 1
            except _GONE:
                pass
    return done


def own_tree() -> list[int]:
    me = psutil.Process()
    try:
        return [me.pid, *(c.pid for c in me.children(recursive=True))]
    except _GONE:
        return [me.pid]


@contextmanager
def pinned(plan: CpuPlan | None, target_pids: Callable[[], list[int]]) -> Iterator[CpuPlan | None]:
    """Pin the target and everything else apart for the block; restore the allowed CPUs after."""
    if plan is None:
        yield None
        return
    allowed = plan.target | plan.others
    target = set(target_pids())
    set_cpus(target, plan.target)
    set_cpus([p for p in own_tree() if p not in target], plan.others)
    try:
        yield plan
    finally:
        set_cpus({*own_tree(), *target, *target_pids()}, allowed)  # an attached target is not in our tree
