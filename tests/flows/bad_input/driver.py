"""Runs the bad-input corpus through ``flows.cli.main(argv)`` in ONE process; prints JSON results.

    python tests/flows/bad_input/driver.py OUT.json BASE_DIR [CASE_ID ...]

Each case runs in a fresh folder under BASE_DIR as its working directory, with the files it names set
up there (a spec, a store of some kind) and its environment variables set; then the driver
records the exit code, stdout, stderr and every file of the folder before and after (path ->
sha256, or "<dir>"), so the test can check that nothing was written. A case that passes every
check and would start a run is stopped where the CLI hands over to Prefect (``quiet_prefect``):
its exit code is reported as "started".
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def load_cases() -> list[dict[str, Any]]:
    spec = importlib.util.spec_from_file_location("perfagents_bad_input_cases", HERE / "cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def snapshot(folder: Path) -> dict[str, str]:
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        files[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def make_store(path: Path, kind: str) -> None:
    """A store path that exists before the run: what it holds must be left as it was."""
    if kind == "dir":
        path.mkdir(parents=True)
        (path / "keep.txt").write_text("a folder, not a store")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_text("not a database\n")
    elif kind in ("foreign", "newer", "ours"):
        import duckdb

        from tasks.store import Store

        if kind == "foreign":
            with duckdb.connect(str(path)) as con:
                con.execute("CREATE TABLE t (a INT)")
            return
        Store(path).close()
        if kind == "newer":
            with duckdb.connect(str(path)) as con:
                con.execute("INSERT INTO schema_migrations VALUES (999, 'from the future', now())")
    else:
        raise ValueError(f"unknown store kind {kind!r}")


def prepare(case: dict[str, Any], folder: Path) -> list[str]:
    spec = case.get("spec")
    spec_path = folder / "target.yaml"
    if isinstance(spec, bytes):
        spec_path.write_bytes(spec)
    elif isinstance(spec, str):
        spec_path.write_text(spec, encoding="utf-8")
    elif spec is not None:
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    for name, text in case.get("files", {}).items():
        (folder / name).write_text(text)
    store = folder / "state" / "store.duckdb"
    if case.get("store"):
        store = folder / "store.duckdb"
        make_store(store, case["store"])
    values = {"spec": str(spec_path), "store": str(store), "json": str(folder / "out.json"), "tmp": str(folder)}
    return [arg.format(**values) for arg in case["argv"]]


class Started(Exception):
    """The CLI accepted the input and would start a run now."""


def started(verbose: bool) -> None:
    raise Started


def run_case(case: dict[str, Any], folder: Path, base_env: dict[str, str]) -> dict[str, Any]:
    import flows.cli

    folder.mkdir(parents=True)  # named by number: a needle must not match the case's id in a path
    argv = prepare(case, folder)
    before = snapshot(folder)
    os.environ.clear()
    os.environ.update({**base_env, **case.get("env", {})})
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    code: int | str | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            flows.cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else str(exc.code))
    except Started:
        code = "started"
    except BaseException:  # noqa: B036 - a traceback is the bug this corpus looks for
        code = "exception"
        err.write(traceback.format_exc())
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(base_env)
    return {"id": case["id"], "argv": argv, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "before": before, "after": snapshot(folder), "folder": str(folder)}


def main(argv: list[str]) -> None:
    out_path, base, wanted = Path(argv[0]), Path(argv[1]), set(argv[2:])
    for name in ("PGPASSWORD", "PERFAGENTS_AGENTS"):
        os.environ.pop(name, None)
    os.environ.update({"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"})  # a narrow terminal: lines wrap
    base_env = dict(os.environ)
    sys.path.insert(0, str(ROOT))
    import flows.cli

    flows.cli.quiet_prefect = started  # the hand-over to Prefect: every check has passed by then
    cases = [case for case in load_cases() if not wanted or case["id"] in wanted]
    results = [run_case(case, base / f"case{i:03d}", base_env) for i, case in enumerate(cases)]
    out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
