"""Apply (and revert) a model's patch to the target's source, then restart the target.

The undo is the exact original bytes of every file the diff touches (base64; ``null`` for a
file the diff creates), read *before* ``git apply`` runs and journaled first (the provisional
undo is the undo): ``perfagents revert`` restores the tree byte for byte from the journal alone,
whether the process died before the patch was applied, half-way, or after. ``git apply`` is
atomic per patch, and runs with ``--check`` semantics first (tasks.advisor.patch).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tasks.advisor.patch import git_apply, unsafe_path
from tasks.changes.runtime import Runtime
from tasks.errors import RefusedError
from tasks.target import restart_target


def _source_dir(params: dict[str, Any]) -> Path:
    return Path(params["source_dir"])


def _checked_paths(paths: list[str], source_dir: Path) -> list[str]:
    for path in paths:
        why = unsafe_path(path, source_dir)
        if why:
            raise RefusedError(f"code patch refused: {why}")
    return paths


def provisional_code_patch(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """The original bytes of every file the diff names, before anything is written."""
    source_dir = _source_dir(params)
    files: dict[str, str | None] = {}
    for path in _checked_paths(list(params["paths"]), source_dir):
        file = source_dir / path
        files[path] = base64.b64encode(file.read_bytes()).decode("ascii") if file.is_file() else None
    return {"source_dir": str(source_dir), "files": files}


def apply_code_patch(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    if rt.handle.process is None:
        raise RefusedError("a code patch needs a restart, and the target was not started by perfagents")
    undo = provisional_code_patch(rt, params)
    ok, detail = git_apply(params["diff"], _source_dir(params), strip=int(params.get("strip", 1)))
    if not ok:  # git apply changes nothing when it fails
        raise RefusedError(f"the patch does not apply: {detail}")
    rt.handle = restart_target(rt.handle, rt.spec, rt.config)
    return undo


def restore_files(undo: dict[str, Any]) -> list[str]:
    """Put back the saved bytes (delete what the patch created); returns the paths restored."""
    source_dir = Path(undo["source_dir"])
    done = []
    for path, data in undo["files"].items():
        if unsafe_path(path, source_dir):
            continue  # the journal names only checked paths; never write outside source_dir
        file = source_dir / path
        if data is None:
            file.unlink(missing_ok=True)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(base64.b64decode(data))
        done.append(path)
    return done


def revert_code_patch(rt: Runtime | None, undo: dict[str, Any]) -> str:
    paths = restore_files(undo)
    if rt is not None and rt.handle.process is not None:
        rt.handle = restart_target(rt.handle, rt.spec, rt.config)
    return f"restored {', '.join(paths) or 'nothing'} in {undo['source_dir']}"
