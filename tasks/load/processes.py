"""The Locust processes of one window: started, pinned, sampled, and all stopped on every path.

A window runs one Locust process, or a master and N workers (tasks/load/distributed.py builds
their commands). Each is spawned in its own session and dies with the toolkit
(tasks/target/process.py ``spawn``), is pinned right after ``exec`` (still single-threaded, so
the threads it starts later inherit the mask), and has its own psutil sampler (its own
``role``: a Locust process is one gevent thread, so the busiest process, not the sum, is what
saturates). The first member is the leader (the single process or the master): its exit ends
the window. Workers then get WORKER_EXIT_S to exit on the master's quit; whatever is still
alive when the leader exits, overruns its bound, or the caller is interrupted is sent SIGTERM,
then SIGKILL, group by group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import polars as pl

from tasks.errors import LoadTestError
from tasks.resources import ProcessTreeSampler, empty_resources, process_tree
from tasks.target.process import signal_group, spawn

SAMPLER_INTERVAL_S = 0.5
TERM_GRACE_S = 3.0  # SIGTERM -> SIGKILL
WORKER_EXIT_S = 10.0  # after the master exits, for its workers to send their last stats and quit
POLL_S = 0.05


@dataclass
class LocustProcess:
    role: str  # "loadgen" (one process), "loadgen-master", "loadgen-1" ... (a worker)
    command: list[str]
    env: dict[str, str]
    out_path: Path
    err_path: Path
    cpus: frozenset[int] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def run_processes(members: list[LocustProcess], cwd: Path, bound: float) -> tuple[int, pl.DataFrame]:
    """Run the members (leader first) until the leader exits; the leader's exit code and every
    member's CPU series. Raises LoadTestError when the leader overruns ``bound`` seconds."""
    samplers: list[ProcessTreeSampler] = []
    deadline = time.monotonic() + bound
    with ExitStack() as files:
        try:
            for member in members:
                out = files.enter_context(member.out_path.open("wb"))
                err = files.enter_context(member.err_path.open("wb"))
                _start(member, cwd, out, err)
                sampler = ProcessTreeSampler(_tree_of(member), member.role, SAMPLER_INTERVAL_S)
                samplers.append(sampler.start())
            leader = members[0].proc
            assert leader is not None
            try:
                exit_code = leader.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise LoadTestError(f"locust overran its {bound:.0f} s bound and was killed") from exc
            _wait_exit(members[1:], min(deadline, time.monotonic() + WORKER_EXIT_S))
        finally:
            frames = [s.stop() for s in samplers]
            stop_processes(members)  # a timeout, an interrupt, an exception: nothing is left behind
    resources = pl.concat(frames, how="diagonal_relaxed") if frames else empty_resources()
    return exit_code, resources


def _start(member: LocustProcess, cwd: Path, out: IO[bytes], err: IO[bytes]) -> None:
    try:
        member.proc = spawn(member.command, cwd=cwd, env=member.env, stdout=out, stderr=err)
    except OSError as exc:
        raise LoadTestError(f"could not start locust ({member.role}): {exc}") from exc
    if member.cpus:
        with suppress(OSError):  # it already exited; its exit code tells the story
            os.sched_setaffinity(member.proc.pid, set(member.cpus))


def _tree_of(member: LocustProcess) -> Callable[[], list[int]]:
    pid = member.pid
    return lambda: process_tree(pid) if pid is not None else []


def _wait_exit(members: list[LocustProcess], deadline: float) -> None:
    for member in members:
        while member.proc is not None and member.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)


def stop_processes(members: list[LocustProcess]) -> None:
    """SIGTERM every live member's group (Locust flushes and quits), SIGKILL those groups after
    TERM_GRACE_S, and reap them."""
    live = [m.proc for m in members if m.proc is not None and m.proc.poll() is None]
    for proc in live:
        signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    for proc in live:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    # one that ignored SIGTERM, and any survivor of its group; only groups that were alive here:
    # the pid of a member reaped before may already be someone else's
    for proc in live:
        signal_group(proc.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_GRACE_S)
