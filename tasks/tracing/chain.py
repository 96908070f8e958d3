"""Keep other injected ``sitecustomize`` modules running under ``opentelemetry-instrument``.

The launcher puts its own ``sitecustomize`` first on PYTHONPATH and does not chain on, so
perfagents' SQL capture (tasks.agents.database.sqlcapture) or the target's own ``sitecustomize`` would
silently stop running. ``hook_pythonpath`` writes a tiny distribution into the run's scratch
folder whose ``opentelemetry_pre_instrument`` entry point (called by OpenTelemetry while it
initializes) executes the shadowed ``sitecustomize`` (inject/perfagents_otel_hook.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

HOOK_MODULE = Path(__file__).resolve().parent / "inject" / "perfagents_otel_hook.py"
HOOK_SUBDIR = "otel-hook"
DIST_INFO = "perfagents_otel_hook-0.dist-info"
METADATA = "Metadata-Version: 2.1\nName: perfagents-otel-hook\nVersion: 0\n"
ENTRY_POINTS = "[opentelemetry_pre_instrument]\nperfagents = perfagents_otel_hook:run_shadowed_sitecustomize\n"


def write_hook(folder: Path) -> Path:
    """The hook module and its dist-info in ``folder`` (rewritten each time; a few hundred bytes)."""
    dist = folder / DIST_INFO
    dist.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOOK_MODULE, folder / HOOK_MODULE.name)
    (dist / "METADATA").write_text(METADATA)
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


def hook_pythonpath(workdir: Path, env: Mapping[str, str]) -> str:
    """``env``'s PYTHONPATH with the hook folder (written under ``workdir``) in front."""
    folder = write_hook(Path(workdir) / HOOK_SUBDIR)
    return os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
