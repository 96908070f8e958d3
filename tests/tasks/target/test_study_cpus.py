"""Concurrent studies on one host: each claims CPUs no other study holds, or is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.errors import InputError
from tasks.target.study_cpus import (
    STUDY_CPUS_ENV,
    claim_study_cpus,
    held_study_cpus,
    slots,
    study_cpus_wanted,
)

ALLOWED = sorted(os.sched_getaffinity(0))
ROOT = Path(__file__).resolve().parents[3]


def test_slots_are_disjoint_runs_of_allowed_cpus():
    assert slots([0, 1, 2, 3, 4], 2) == [frozenset({0, 1}), frozenset({2, 3})]
    assert slots([3, 1], 1) == [frozenset({1}), frozenset({3})]
    assert slots([0, 1], 3) == []


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_setting_is_refused(monkeypatch, raw):
    monkeypatch.setenv(STUDY_CPUS_ENV, raw)
    with pytest.raises(InputError, match=STUDY_CPUS_ENV):
        study_cpus_wanted()


def test_unset_claims_nothing_and_pins_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(STUDY_CPUS_ENV, raising=False)
    with claim_study_cpus(slots_dir=tmp_path) as cpus:
        assert cpus is None and held_study_cpus() is None
        assert sorted(os.sched_getaffinity(0)) == ALLOWED
    assert list(tmp_path.iterdir()) == []


def test_more_cpus_than_the_host_has_is_refused(tmp_path):
    with pytest.raises(InputError, match="would share CPUs"), claim_study_cpus(len(ALLOWED) + 1, tmp_path):
        pass


@pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs")
def test_each_study_gets_its_own_cpu_and_a_third_is_refused(tmp_path):
    """Two other processes hold the host's slots (one CPU each): this one is refused; once one of them
    ends (its lock dies with it), this one gets that slot and is pinned to it."""
    holder = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tasks.target.study_cpus import claim_study_cpus
        with claim_study_cpus(1, Path({str(tmp_path)!r})) as cpus:
            print(sorted(cpus)[0], flush=True)
            sys.stdin.read()
    """)
    holders = []
    try:
        for _ in ALLOWED:
            proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            holders.append((proc, int(proc.stdout.readline())))
        assert sorted(cpu for _, cpu in holders) == ALLOWED  # disjoint: one CPU each
        with pytest.raises(InputError, match="held by other studies"), claim_study_cpus(1, tmp_path):
            pass
        first, cpu = holders[0]
        first.stdin.close()
        first.wait(10)
        with claim_study_cpus(1, tmp_path) as cpus:
            assert cpus == {cpu} and held_study_cpus() == {cpu}
            assert os.sched_getaffinity(0) == {cpu}
        assert sorted(os.sched_getaffinity(0)) == ALLOWED and held_study_cpus() is None
    finally:
        for proc, _ in holders:
            proc.kill()
            proc.wait(10)
