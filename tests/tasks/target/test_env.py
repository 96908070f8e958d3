"""The target's environment: injected folders go in front of its own PYTHONPATH, never instead."""

from __future__ import annotations

import os

from tasks.target.lifecycle import _merged_pythonpath


def test_injected_folders_come_first_and_the_targets_own_path_stays() -> None:
    own = {"PYTHONPATH": os.pathsep.join(["/app/src", "/shared"])}  # e.g. the spec's start.env
    extra = {"PYTHONPATH": os.pathsep.join(["/inject/capture", "/shared"])}  # capture_env: ours + os.environ's
    merged = _merged_pythonpath(extra, own)["PYTHONPATH"].split(os.pathsep)
    assert merged == ["/inject/capture", "/shared", "/app/src"]  # was ["/inject/capture", "/shared"]: /app/src lost
    assert _merged_pythonpath({"X": "1"}, own) == {}  # nothing injected: the target's env as it is
    assert _merged_pythonpath(extra, {})["PYTHONPATH"] == extra["PYTHONPATH"]
