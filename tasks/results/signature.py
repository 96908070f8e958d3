"""A run's signature: the kept state's agent-free windows summarised per endpoint, written at
the run's end so that runs of one target and load shape can be compared over time
(``perfagents regressions``; the SQL and the columns: tasks/store/signatures.py, docs/store.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tasks.run import Run
from tasks.spec import LoadSpec
from tasks.store import dumps

LOAD_SHAPE_HEX = 8


def load_shape(load: LoadSpec) -> str:
    """A short key of how the load was driven (users, spawn rate, durations, scenario):
    signatures of different load shapes are never compared."""
    return stored_load_shape(load.model_dump(mode="json"))


def stored_load_shape(load: dict[str, Any]) -> str:
    """``load_shape`` of a spec's load section as the store keeps it (``runs.spec``, JSON)."""
    return hashlib.sha256(dumps(load).encode()).hexdigest()[:LOAD_SHAPE_HEX]


def record_signature(run: Run) -> int:
    """Write the run's signature from its kept state's valid agent-free windows; rows written
    (0 when there is no such window). The DB time share comes from the run's latest valid
    profiling window of the same configuration, when it holds traces."""
    windows = [w.window_id for w in run.noise.kept_aa if w.valid]
    if not windows:
        return 0
    config = dict(run.rt.config)
    profiles = [r["window_id"] for r in run.store.valid_profile_windows(run.run_id)
                if json.loads(r["config"] or "{}") == config][:1]
    return run.store.save_signature(run.run_id, run.spec.name, load_shape(run.spec.load), windows, profiles)
