"""A Locust LoadTestShape that steps the user count: add it with ``-f users.py,step_shape.py``.

It runs inside the Locust process (gevent-patched), so it imports nothing from perfagents;
``tasks.analysis.capacity.step_plan`` reproduces its schedule on the flow side. Environment:

    PERFAGENTS_STEPS          user counts, one per step, e.g. "1,2,4,8,16" (required)
    PERFAGENTS_STEP_S         seconds per step (default 10)
    PERFAGENTS_SPAWN_RATE     users started per second (default: the largest step, so every
                              step is reached within about a second)
    PERFAGENTS_STEP_PLAN_OUT  optional path: at the first tick the shape writes
                              {"levels", "step_s", "spawn_rate", "start_ts"} there, start_ts
                              being the epoch time step 0 began (tasks.analysis.capacity.read_step_plan)

Step i holds levels[i] users during [i*step_s, (i+1)*step_s) from the shape's start; after the
last step tick() returns None, which makes a headless Locust quit by itself.
"""

from __future__ import annotations

import json
import os
import time

from locust import LoadTestShape

STEPS_ENV = "PERFAGENTS_STEPS"
STEP_S_ENV = "PERFAGENTS_STEP_S"
SPAWN_RATE_ENV = "PERFAGENTS_SPAWN_RATE"
PLAN_OUT_ENV = "PERFAGENTS_STEP_PLAN_OUT"
DEFAULT_STEP_S = 10.0


def read_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise ValueError(
            f"{STEPS_ENV}={text!r} is not a comma-separated list of user counts"
        ) from exc
    if not levels or min(levels) < 1:
        raise ValueError(f"{STEPS_ENV}={text!r} needs at least one user count, each >= 1")
    return levels


def read_positive(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else default
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is not a number") from exc
    if not value > 0:
        raise ValueError(f"{name}={text!r} must be positive")
    return value


class StepLoadShape(LoadTestShape):
    """Hold each of PERFAGENTS_STEPS users for PERFAGENTS_STEP_S seconds, then stop."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = read_levels(os.environ.get(STEPS_ENV, ""))
        self.step_s = read_positive(STEP_S_ENV, DEFAULT_STEP_S)
        self.spawn_rate = read_positive(SPAWN_RATE_ENV, float(max(self.levels)))
        self.plan_out = os.environ.get(PLAN_OUT_ENV, "")
        self.plan_written = False

    def write_plan(self) -> None:
        start_ts = time.time() - self.get_run_time()
        plan = {
            "levels": self.levels,
            "step_s": self.step_s,
            "spawn_rate": self.spawn_rate,
            "start_ts": start_ts,
        }
        tmp = self.plan_out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(plan, fh)
        os.replace(tmp, self.plan_out)
        self.plan_written = True

    def tick(self) -> tuple[int, float] | None:
        if self.plan_out and not self.plan_written:
            self.write_plan()
        step = int(self.get_run_time() // self.step_s)
        if step >= len(self.levels):
            return None
        return self.levels[step], self.spawn_rate
