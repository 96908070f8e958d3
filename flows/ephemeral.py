"""Prefect's temporary API server (a run without PREFECT_API_URL) dies with the run.

Prefect starts it as a plain child process (``SubprocessASGIServer``): a run killed by SIGKILL or
the OOM killer left it serving on its port forever (benchmarks/kill_campaign.py found one per
early kill). Its ``subprocess`` module is given a Popen that sets ``PR_SET_PDEATHSIG`` from the
toolkit's long-lived spawner thread (tasks/target/process.py), as for targets and Locust.
"""

from __future__ import annotations

import subprocess
import types


def ephemeral_server_dies_with_us() -> None:
    """Install the Popen shim in Prefect's server module (idempotent; a no-op if it moved)."""
    from prefect.server.api import server

    from tasks.target.process import popen_dying_with_us

    if getattr(server.subprocess, "perfagents_shim", False) or not hasattr(server, "SubprocessASGIServer"):
        return
    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
    shim.Popen = popen_dying_with_us
    shim.perfagents_shim = True
    server.subprocess = shim  # type: ignore[assignment]
