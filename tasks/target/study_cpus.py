"""CPUs of its own for each of several studies running at once on one host.

A Prefect process worker started with ``--limit N`` runs N flow runs (studies) side by side.
Left alone, their targets and load generators share every CPU: each study's windows are then
disturbed by the others (the gate rejects them as outside load, or worse, a change is judged
on a neighbour's noise). With ``PERFAGENTS_STUDY_CPUS=K`` in the flow run's environment (the
``parallel`` deployments in prefect.yaml set it), a run claims a slot of K CPUs no other study
holds before it starts its target: slot i is the i-th run of K allowed CPUs, and the claim is
an exclusive ``flock`` on ``<slots dir>/slot-<i>.lock`` (``PERFAGENTS_STUDY_SLOTS_DIR``, default
a folder in the system temp dir, one per host), which the kernel releases when the process
ends, however it ends. The run then pins itself (every thread), so the target, Locust and
the agents it starts inherit the slot, and the outside-load meter ignores processes pinned
elsewhere (tasks/resources.py). When the host has fewer than K CPUs, or every slot is held,
the run is refused with one line before anything starts: it would share CPUs.

Unset (the default) nothing is claimed: one study at a time owns the machine, as before.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tasks.errors import InputError
from tasks.target.pinning import set_cpus

STUDY_CPUS_ENV = "PERFAGENTS_STUDY_CPUS"
SLOTS_DIR_ENV = "PERFAGENTS_STUDY_SLOTS_DIR"
DEFAULT_SLOTS_DIR = Path(tempfile.gettempdir()) / "perfagents-study-slots"
_held: list[frozenset[int]] = []  # the slot this process holds now


def held_study_cpus() -> frozenset[int] | None:
    """The CPUs of the slot this process holds (None: no slot)."""
    return _held[-1] if _held else None


def study_cpus_wanted() -> int | None:
    """K from PERFAGENTS_STUDY_CPUS (None: unset); a value that is not a positive integer is refused."""
    raw = os.environ.get(STUDY_CPUS_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"{STUDY_CPUS_ENV} must be a positive whole number of CPUs (got {raw!r})")
    return int(raw)


def slots(allowed: list[int], per_study: int) -> list[frozenset[int]]:
    """The disjoint CPU slots of ``per_study`` CPUs the allowed CPUs hold (a remainder is left unused)."""
    ordered = sorted(allowed)
    return [frozenset(ordered[i:i + per_study]) for i in range(0, len(ordered) - per_study + 1, per_study)]


@contextmanager
def claim_study_cpus(per_study: int | None = None, slots_dir: Path | None = None) -> Iterator[frozenset[int] | None]:
    """Hold a free slot and pin this process to it for the block (None: no slot wanted)."""
    per_study = per_study if per_study is not None else study_cpus_wanted()
    if per_study is None:
        yield None
        return
    allowed = sorted(os.sched_getaffinity(0))
    free = slots(allowed, per_study)
    if not free:
        raise InputError(f"this host lets a study use {len(allowed)} CPUs; {STUDY_CPUS_ENV}={per_study} "
                         f"needs {per_study}: concurrent studies would share CPUs")
    folder = slots_dir or Path(os.environ.get(SLOTS_DIR_ENV) or DEFAULT_SLOTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    for index, cpus in enumerate(free):
        fd = os.open(folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {sorted(cpus)}\n".encode())
            set_cpus([os.getpid()], cpus)
            _held.append(cpus)
            yield cpus
        finally:
            if _held and _held[-1] == cpus:
                _held.pop()
            set_cpus([os.getpid()], allowed)
            with suppress(OSError):
                os.close(fd)  # releases the lock
        return
    raise InputError(f"all {len(free)} CPU slots of {per_study} CPUs on this host are held by other studies "
                     f"({folder}): a study now would share CPUs; lower the worker's --limit or wait")
