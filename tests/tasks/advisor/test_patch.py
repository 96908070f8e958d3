"""The model's answer as a patch: extracted from its ```diff block, paths kept inside source_dir,
checked with ``git apply --check`` in a real work tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tasks.advisor.patch import (
    check_answer,
    diff_paths,
    extract_diff,
    git_apply,
    require_clean_work_tree,
)
from tasks.errors import RefusedError

RECORDED = Path(__file__).resolve().parent / "recorded_answers"


def answer(name: str) -> str:
    return json.loads((RECORDED / name).read_text())["content"]


def fenced(diff: str) -> str:
    return f"Here you go.\n\n```diff\n{diff}```\nThat should do it."


def test_the_recorded_n_plus_one_fix_applies_and_reverts(shop_source: Path) -> None:
    before = (shop_source / "catalog.py").read_text()
    check = check_answer(answer("10_small_n_plus_one_joined.json"), shop_source)
    assert (check.outcome, check.paths, check.strip) == ("applies", ("catalog.py",), 1), check.detail
    assert (shop_source / "catalog.py").read_text() == before  # --check changed nothing
    assert git_apply(check.diff or "", shop_source)[0]
    assert "JOIN customers" in (shop_source / "catalog.py").read_text()
    assert git_apply(check.diff or "", shop_source, reverse=True)[0]
    assert (shop_source / "catalog.py").read_text() == before


def test_no_diff_block_is_no_patch(shop_source: Path) -> None:
    assert check_answer(answer("20_small_score_product_no_patch.json"), shop_source).outcome == "no_patch"
    assert check_answer("```python\nprint(1)\n```", shop_source).outcome == "no_patch"
    assert check_answer("```diff\njust words\n```", shop_source).outcome == "no_patch"


def test_a_diff_whose_context_differs_does_not_apply(shop_source: Path) -> None:
    check = check_answer(answer("30_checkout_does_not_apply.json"), shop_source)
    assert check.outcome == "does_not_apply" and "patch" in check.detail


def test_miscounted_hunks_still_apply(shop_source: Path) -> None:
    diff = extract_diff(answer("10_small_n_plus_one_joined.json")) or ""
    assert check_answer(fenced(diff.replace("@@ -53,13 +53,11 @@", "@@ -53,99 +53,2 @@")), shop_source).outcome == "applies"


def test_paths_without_prefixes_use_p0(shop_source: Path) -> None:
    diff = (extract_diff(answer("10_small_n_plus_one_joined.json")) or "").replace("a/catalog.py", "catalog.py")
    diff = diff.replace("b/catalog.py", "catalog.py")
    assert diff_paths(diff) == (["catalog.py"], 0)
    assert check_answer(fenced(diff), shop_source).outcome == "applies"


@pytest.mark.parametrize("path", ["../outside.py", "/etc/passwd", "sub/../../x.py", ".git/config", "C:/x.py"])
def test_paths_outside_source_dir_are_refused(shop_source: Path, path: str) -> None:
    diff = f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n" if not path.startswith("/") else \
        f"--- {path}\n+++ {path}\n@@ -1 +1 @@\n-a\n+b\n"
    check = check_answer(fenced(diff), shop_source)
    assert check.outcome == "refused", check


def test_a_symlink_out_of_source_dir_is_refused(shop_source: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.py").write_text("a\n")
    os.symlink(tmp_path / "elsewhere", shop_source / "link")
    check = check_answer(fenced("--- a/link/x.py\n+++ b/link/x.py\n@@ -1 +1 @@\n-a\n+b\n"), shop_source)
    assert check.outcome == "refused" and "symlink" in check.detail
    assert (tmp_path / "elsewhere" / "x.py").read_text() == "a\n"


def test_source_dir_in_a_subfolder_of_the_work_tree(tmp_path: Path, git) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "m.py").write_text("x = 1\n")
    (tmp_path / "m.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "i")
    diff = "--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
    check = check_answer(fenced(diff), tmp_path / "app")
    assert check.outcome == "applies"
    assert git_apply(check.diff or "", tmp_path / "app")[0]
    assert (tmp_path / "app" / "m.py").read_text() == "x = 2\n" and (tmp_path / "m.py").read_text() == "x = 1\n"


def test_a_dirty_or_missing_work_tree_is_refused(shop_source: Path, tmp_path: Path) -> None:
    require_clean_work_tree(shop_source)
    (shop_source / "catalog.py").write_text("changed\n")
    with pytest.raises(RefusedError, match="uncommitted"):
        require_clean_work_tree(shop_source)
    (tmp_path / "plain").mkdir()
    with pytest.raises(RefusedError, match="not a git work tree"):
        require_clean_work_tree(tmp_path / "plain")


@pytest.mark.parametrize("git_headers", [False, True])
def test_a_multi_file_diff_applies_file_by_file_and_reverts(tmp_path: Path, git, git_headers: bool) -> None:
    """--recount alone reads the next file's ``--- a/y.py`` as a removed line of the last hunk."""
    (tmp_path / "x.py").write_text("a\nb\nc\n")
    (tmp_path / "y.py").write_text("1\n2\n3\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "start")
    sections = [f"{'diff --git a/x.py b/x.py' + chr(10) if git_headers else ''}--- a/x.py\n+++ b/x.py\n"
                "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
                f"{'diff --git a/y.py b/y.py' + chr(10) if git_headers else ''}--- a/y.py\n+++ b/y.py\n"
                "@@ -1,9 +1,9 @@\n 1\n-2\n+two\n 3\n"]  # a miscounted hunk too
    check = check_answer(fenced("".join(sections)), tmp_path)
    assert (check.outcome, check.paths) == ("applies", ("x.py", "y.py")), check.detail
    assert git_apply(check.diff or "", tmp_path)[0]
    assert ((tmp_path / "x.py").read_text(), (tmp_path / "y.py").read_text()) == ("a\nB\nc\n", "1\ntwo\n3\n")
    assert git_apply(check.diff or "", tmp_path, reverse=True)[0]
    assert ((tmp_path / "x.py").read_text(), (tmp_path / "y.py").read_text()) == ("a\nb\nc\n", "1\n2\n3\n")


def test_a_multi_file_diff_with_one_bad_file_changes_nothing(shop_source: Path) -> None:
    good = extract_diff(answer("10_small_n_plus_one_joined.json")) or ""
    bad = "--- a/catalog.py\n+++ b/catalog.py\n@@ -1,2 +1,2 @@\n-no such line\n+x\n nor this\n"
    before = (shop_source / "catalog.py").read_text()
    assert not git_apply(good + bad, shop_source)[0]
    assert (shop_source / "catalog.py").read_text() == before  # every file checked before any applied
