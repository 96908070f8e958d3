"""The target lifecycle: setup, start on a free port, wait until ready, watch, stop, attach.

    process.py    ports, program resolution, spawning (own session + PDEATHSIG), killing trees
    handle.py     TargetHandle: base_url, port, process, pids(), is_running()
    knobs.py      knob values: env variables at start, live HTTP settings
    lifecycle.py  run_setup, start/stop/restart/attach_target, running_target, database URLs
"""

from __future__ import annotations

from tasks.target.handle import TargetHandle
from tasks.target.knobs import apply_http_knob, knob_env, read_http_knob
from tasks.target.lifecycle import (
    attach_target,
    database_url,
    restart_target,
    run_setup,
    running_target,
    start_target,
    stop_target,
)
from tasks.target.process import free_port, resolve_command

__all__ = [
    "TargetHandle",
    "apply_http_knob",
    "attach_target",
    "database_url",
    "free_port",
    "knob_env",
    "read_http_knob",
    "resolve_command",
    "restart_target",
    "run_setup",
    "running_target",
    "start_target",
    "stop_target",
]
