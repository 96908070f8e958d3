"""ProcessTreeSampler on real process trees that grow and shrink."""

from __future__ import annotations

import subprocess
import sys
import time

import polars as pl
import pytest

from tasks.resources import RESOURCE_SCHEMA, ProcessTreeSampler, process_tree

# a parent that burns CPU and starts a sleeping child; both bounded in time
BUSY_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
print(child.pid, flush=True)
end = time.time() + 30
while time.time() < end:
    pass
"""


@pytest.fixture
def busy_tree():
    proc = subprocess.Popen([sys.executable, "-c", BUSY_PARENT], stdout=subprocess.PIPE, text=True)
    child_pid = int(proc.stdout.readline())
    try:
        yield proc, child_pid
    finally:
        for pid in process_tree(proc.pid)[::-1]:
            subprocess.run(["kill", "-9", str(pid)], check=False)
        proc.wait(10)


def test_process_tree_lists_descendants_and_nothing_for_the_dead(busy_tree):
    proc, child_pid = busy_tree
    assert process_tree(proc.pid) == [proc.pid, child_pid]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    assert process_tree(dead.pid) == []


def test_sampler_follows_a_tree_that_shrinks(busy_tree):
    proc, child_pid = busy_tree
    sampler = ProcessTreeSampler(lambda: process_tree(proc.pid), "target", interval_s=0.2)
    sampler.start()
    time.sleep(1.0)
    subprocess.run(["kill", "-9", str(child_pid)], check=True)  # a process vanishes mid-run
    time.sleep(1.0)
    frame = sampler.stop()

    assert frame.schema == pl.Schema(RESOURCE_SCHEMA)
    assert frame.height >= 6
    assert set(frame["role"]) == {"target"}
    assert frame["pids"][0] == 2 and frame["pids"][-1] == 1
    assert frame["ts"].is_sorted()
    # the busy parent burns most of a core; the machine is shared, so be generous
    assert frame["cpu_pct"].median() > 10
    assert frame["cpu_pct"].max() < 100 * 4
    assert (frame["rss_bytes"] > 0).all() and (frame["threads"] >= 1).all()
    assert (frame["open_files"] >= 3).all()
    assert frame["ctx_switches"][0] > 0


def test_vanished_and_unknown_pids_leave_gaps_not_errors():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    sampler = ProcessTreeSampler(lambda: [gone.pid, 2**22 + 7], "ghost", interval_s=0.1)
    with sampler:
        time.sleep(0.4)
    assert sampler.frame().height == 0
    assert sampler.frame().schema == pl.Schema(RESOURCE_SCHEMA)


def test_new_process_counts_from_its_birth():
    """A process born between samples is counted, with CPU it spent since birth."""
    procs: list[subprocess.Popen] = []
    sampler = ProcessTreeSampler(lambda: [p.pid for p in procs if p.poll() is None], "late", interval_s=0.3)
    sampler.start()
    try:
        time.sleep(0.4)
        procs.append(subprocess.Popen([sys.executable, "-c", "import time\nend=time.time()+1.5\nwhile time.time()<end: pass"]))
        procs[0].wait(10)
        time.sleep(0.1)
    finally:
        frame = sampler.stop()
        for p in procs:
            p.kill()
            p.wait(10)
    assert frame.height >= 3
    assert frame["cpu_pct"].max() > 10
    assert frame["pids"].to_list() == [1] * frame.height


def test_foreign_cpu_meter_counts_our_descendants_as_own_and_others_not() -> None:
    """The split itself (deterministic even on a busy machine: xdist runs other tests beside it)."""
    import psutil

    from tasks.resources import ForeignCpuMeter, _foreign_cpu, _own_pids

    burn = "import time\nt=time.time()\nwhile time.time()-t<{s}: pass"
    child = subprocess.Popen([sys.executable, "-c", burn.format(s=3.0)])
    # not our descendant: `sh` starts it in the background and exits at once
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c '{burn.format(s=4.0)}' >/dev/null 2>&1 & echo $!"],
                         check=True, timeout=30, capture_output=True, text=True)
    stranger = psutil.Process(int(out.stdout.strip()))
    try:
        meter = ForeignCpuMeter().start()
        named = ForeignCpuMeter(lambda: [stranger.pid]).start()
        time.sleep(1.5)
        foreign = {pid for pid, _ in _foreign_cpu(_own_pids([]))}
        assert child.pid not in foreign and stranger.pid in foreign
        assert stranger.pid not in {pid for pid, _ in _foreign_cpu(_own_pids([stranger.pid]))}
        assert meter.stop() >= 0.5  # at least the stranger's busy core (others only add to it)
        assert named.stop() >= 0.0
    finally:
        for proc in (child, stranger):
            proc.kill()
        child.wait(10)


def test_foreign_cpu_meter_counts_cpu_stolen_by_the_hypervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another guest on the host is outside load no process list shows: its steal is counted,
    on the study's CPUs only."""
    from collections import namedtuple

    import tasks.resources as resources

    Times = namedtuple("Times", "user system idle steal")
    stolen = {"cpu0": 100.0, "cpu1": 50.0}
    monkeypatch.setattr(resources.psutil, "cpu_times", lambda percpu=False: [
        Times(0.0, 0.0, 0.0, stolen["cpu0"]), Times(0.0, 0.0, 0.0, stolen["cpu1"])])
    monkeypatch.setattr(resources, "_foreign_cpu", lambda own, cpus=None: {})  # no outside process
    quiet = resources.ForeignCpuMeter(sample_s=0.05).start()
    both = resources.ForeignCpuMeter(sample_s=0.05).start()
    ours = resources.ForeignCpuMeter(sample_s=0.05, cpus=frozenset({1})).start()
    assert quiet.stop() == 0.0
    t0 = time.monotonic()
    time.sleep(0.5)
    stolen["cpu0"] += 0.5 * 0.4  # 0.4 of a core stolen from cpu0 over 0.5 s
    both_cores, our_cores = both.stop(), ours.stop()
    elapsed = time.monotonic() - t0
    assert 0.2 / (elapsed + 0.2) <= both_cores <= 0.2 / 0.5 + 0.01
    assert our_cores == 0.0  # cpu0 is not the study's


def test_foreign_cpu_leaves_out_processes_pinned_off_our_cpus() -> None:
    """Another study pinned to its own CPUs takes none of ours: with ``cpus`` it is not outside load."""
    import os

    import psutil

    from tasks.resources import _foreign_cpu, _own_pids

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    out = subprocess.run(["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(20)' >/dev/null 2>&1 & echo $!"],
                         check=True, timeout=30, capture_output=True, text=True)
    stranger = psutil.Process(int(out.stdout.strip()))
    try:
        stranger.cpu_affinity([cpus[1]])
        ours, theirs = frozenset({cpus[0]}), frozenset({cpus[1]})
        assert stranger.pid in {pid for pid, _ in _foreign_cpu(_own_pids([]))}
        assert stranger.pid in {pid for pid, _ in _foreign_cpu(_own_pids([]), theirs)}
        assert stranger.pid not in {pid for pid, _ in _foreign_cpu(_own_pids([]), ours)}
    finally:
        stranger.kill()
