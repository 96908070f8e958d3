"""How many Locust processes a run's windows get, and what the result reports of them."""

from __future__ import annotations

import math

from tasks.analysis.gate import MAX_LOADGEN_CPU_PCT
from tasks.load.generator import AUTO_SCALE_CPU_PCT, LoadGenerator


def test_a_fixed_count_never_changes():
    gen = LoadGenerator(2, max_processes=8)
    assert gen.processes == 2 and not gen.auto
    gen.record(2, 99.0, saturated=True)
    gen.record(2, 40.0, saturated=False)
    assert gen.processes == 2
    assert gen.summary() == {"processes": 2, "cpu_max": 99.0, "saturated_windows": 1}


def test_auto_adds_a_worker_before_the_gate_would_reject():
    assert AUTO_SCALE_CPU_PCT < MAX_LOADGEN_CPU_PCT
    gen = LoadGenerator("auto", max_processes=3)
    assert gen.processes == 1
    gen.record(1, AUTO_SCALE_CPU_PCT - 1, saturated=False)  # calm: stays
    assert gen.processes == 1
    gen.record(1, AUTO_SCALE_CPU_PCT + 1, saturated=False)  # valid window, but hot: one more next time
    assert gen.processes == 2 and gen.grown_at == [2]
    gen.record(2, MAX_LOADGEN_CPU_PCT + 5, saturated=True)  # rejected by the gate: one more again
    assert gen.processes == 3
    gen.record(3, 99.0, saturated=True)  # no more CPUs to grow onto
    assert gen.processes == 3
    assert gen.summary() == {"processes": 3, "cpu_max": 99.0, "saturated_windows": 2}


def test_a_window_without_a_cpu_reading_changes_nothing():
    gen = LoadGenerator("auto", max_processes=4)
    gen.record(1, math.nan, saturated=False)
    assert gen.processes == 1 and gen.summary() == {"processes": 1, "cpu_max": 0.0, "saturated_windows": 0}
