"""The load generator of one run: how many Locust processes, and how hard they worked.

``load.processes`` is a number (every window runs that many: 1 is one process, N > 1 a master
and N workers) or ``auto``. With ``auto`` a run starts with one process and adds a worker
for the next window whenever the busiest Locust process of a window passed AUTO_SCALE_CPU_PCT
of a core (mean over the measured part): below the gate's MAX_LOADGEN_CPU_PCT, so the
generator grows before the gate would reject a window for it, and never mid-window (a window
is measured by one generator). It stops at the CPUs the toolkit may use: a worker per core is
Locust's own advice, and more processes than cores only share them. A window the gate
rejected as saturated still adds one, so its re-measurement has more room.

The result's ``load_generator``: ``processes`` (the most any window used), ``cpu_max`` (the
highest busiest-process mean of any window, % of one core) and ``saturated_windows`` (windows
the gate rejected for a saturated generator).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from tasks.analysis.gate import MAX_LOADGEN_CPU_PCT
from tasks.result import LoadGeneratorSummary

AUTO_SCALE_CPU_PCT = 75.0  # add a worker above this; the gate rejects above MAX_LOADGEN_CPU_PCT
assert AUTO_SCALE_CPU_PCT < MAX_LOADGEN_CPU_PCT


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0))


@dataclass
class LoadGenerator:
    setting: int | str = 1  # the spec's load.processes
    max_processes: int = field(default_factory=usable_cpus)
    processes: int = 0  # for the next window
    used_max: int = 0
    cpu_max: float = 0.0
    saturated_windows: int = 0
    windows: int = 0
    grown_at: list[int] = field(default_factory=list)  # window numbers after which auto added a worker

    def __post_init__(self) -> None:
        if not self.processes:
            self.processes = self.setting if isinstance(self.setting, int) else 1

    @property
    def auto(self) -> bool:
        return self.setting == "auto"

    def record(self, processes: int, cpu_pct: float, saturated: bool) -> None:
        """One window measured with ``processes`` workers; grow for the next one when ``auto``."""
        self.windows += 1
        self.used_max = max(self.used_max, processes)
        if math.isfinite(cpu_pct):
            self.cpu_max = max(self.cpu_max, cpu_pct)
        self.saturated_windows += int(saturated)
        hot = saturated or (math.isfinite(cpu_pct) and cpu_pct > AUTO_SCALE_CPU_PCT)
        if self.auto and hot and self.processes < self.max_processes:
            self.processes += 1
            self.grown_at.append(self.windows)

    def summary(self) -> LoadGeneratorSummary:
        return LoadGeneratorSummary(processes=self.used_max or self.processes, cpu_max=round(self.cpu_max, 1),
                                    saturated_windows=self.saturated_windows)
