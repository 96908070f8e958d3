"""The code_patch change kind: its undo is the original bytes, and revert puts them back exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.advisor.patch import git_apply
from tasks.changes import CHANGE_KINDS
from tasks.changes.code_patch import provisional_code_patch, revert_code_patch
from tasks.errors import RefusedError

DIFF = """diff --git a/app.py b/app.py
--- a/app.py
+++ b/app.py
@@ -1,2 +1,2 @@
 x = 1
-y = 2
+y = 3
diff --git a/new.py b/new.py
new file mode 100644
--- /dev/null
+++ b/new.py
@@ -0,0 +1 @@
+z = 4
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_bytes(b"x = 1\ny = 2\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def params(tree: Path) -> dict:
    return {"source_dir": str(tree), "diff": DIFF, "paths": ["app.py", "new.py"], "strip": 1}


def test_the_undo_is_known_before_the_patch_and_restores_every_byte(tree: Path) -> None:
    undo = provisional_code_patch(None, params(tree))  # type: ignore[arg-type]
    ok, detail = git_apply(DIFF, tree)
    assert ok, detail
    assert (tree / "app.py").read_bytes() == b"x = 1\ny = 3\n" and (tree / "new.py").is_file()
    note = revert_code_patch(None, undo)  # no live target: after a crash, from the journal alone
    assert (tree / "app.py").read_bytes() == b"x = 1\ny = 2\n" and not (tree / "new.py").exists()
    assert "app.py" in note


def test_a_path_outside_the_source_folder_is_refused_before_anything_is_read(tree: Path) -> None:
    with pytest.raises(RefusedError, match="leaves the source folder"):
        provisional_code_patch(None, {**params(tree), "paths": ["../etc/passwd"]})  # type: ignore[arg-type]


def test_a_patch_on_a_target_perfagents_did_not_start_is_refused(tree: Path) -> None:
    rt = SimpleNamespace(handle=SimpleNamespace(process=None))
    with pytest.raises(RefusedError, match="restart"):
        CHANGE_KINDS["code_patch"].apply(rt, params(tree))  # type: ignore[arg-type]
    assert (tree / "app.py").read_bytes() == b"x = 1\ny = 2\n"
