"""Load testing: Locust as a bounded subprocess, every request recorded as a sample.

``listener.py`` runs inside Locust and must never be imported here (gevent monkey-patching).
"""

from __future__ import annotations

from tasks.load.runner import LoadResult, run_load_test
from tasks.load.samples import SAMPLE_SCHEMA, empty_samples, read_samples
from tasks.load.scenario import write_scenario

__all__ = ["SAMPLE_SCHEMA", "LoadResult", "empty_samples", "read_samples", "run_load_test", "write_scenario"]
