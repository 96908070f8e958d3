"""Statement capture injected through sitecustomize: real interpreters, real SQLite, real uvicorn."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from tasks.agents.database.sqlcapture import (
    ENV_VAR,
    INJECT_DIR,
    capture_env,
    read_statements,
    set_capture,
    sql_log_dir,
)

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("perfagents_test_sqlite_app", HERE / "sqlite_target_app.py")
target_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(target_app)

OTHER_PYTHONS = [Path(f"/root/.pyenv/versions/{v}/bin/python") for v in ("3.12.1", "3.8.18", "3.13.0")]
RUN_TIMEOUT_S = 60

SCRIPT = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1])
    con.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(i, str(i)) for i in range(100)])
    for i in range(3):
        con.execute("SELECT b FROM t WHERE a = ?", (i,)).fetchall()
    cur = con.cursor()
    cur.execute("SELECT count(*) FROM t WHERE b = :b", {"b": "7"})
    cur.fetchone()

    class Mine(sqlite3.Connection):
        pass

    other = sqlite3.connect(":memory:", factory=Mine)
    assert isinstance(other, Mine), type(other)
    other.execute("SELECT 42").fetchone()
    print("ok")
    """
)


def run_python(python: str | Path, args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([str(python), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", ENV_VAR)}
    env.update(extra)
    return env


def test_capture_env_puts_inject_first_and_creates_the_folder(tmp_path):
    log_dir = sql_log_dir(tmp_path)
    env = capture_env(log_dir, {"PYTHONPATH": "/somewhere/else"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(INJECT_DIR), "/somewhere/else"]
    assert env[ENV_VAR] == str(log_dir.resolve()) and log_dir.is_dir()
    assert capture_env(log_dir, {})["PYTHONPATH"] == str(INJECT_DIR)


def test_noop_without_the_env_var(tmp_path):
    probe = "import sqlite3, sys; print(getattr(sqlite3.connect, '_perfagents', False), 'perfagents_sqlcapture' in sys.modules)"
    out = run_python(sys.executable, ["-c", probe], clean_env(PYTHONPATH=str(INJECT_DIR)), tmp_path)
    assert out.split() == ["False", "False"]
    out = run_python(sys.executable, ["-c", probe],
                     clean_env(PYTHONPATH=str(INJECT_DIR), **{ENV_VAR: str(tmp_path / "log")}), tmp_path)
    assert out.split() == ["True", "True"]


@pytest.mark.parametrize("capture", [False, True])
def test_chains_the_sitecustomize_it_shadows(tmp_path, capture):
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import builtins\nbuiltins.CHAINED_SITECUSTOMIZE = 'yes'\n")
    env = clean_env(PYTHONPATH=os.pathsep.join([str(INJECT_DIR), str(other)]))
    if capture:
        env[ENV_VAR] = str(tmp_path / "log")
    out = run_python(sys.executable, ["-c", "print(CHAINED_SITECUSTOMIZE)"], env, tmp_path)
    assert out.strip() == "yes"


def test_captures_every_statement_kind(tmp_path):
    log_dir = tmp_path / "log"
    env = clean_env(**capture_env(log_dir, {}))
    run_python(sys.executable, ["-c", SCRIPT, str(tmp_path / "x.db")], env, tmp_path)
    frame = read_statements(log_dir)
    assert list(frame.columns[:10]) == ["ts", "duration_ms", "sql", "pid", "thread", "request_id", "method",
                                        "path", "route", "rows"]
    sqls = frame["sql"].to_list()
    assert sqls.count("SELECT b FROM t WHERE a = ?") == 3  # connection.execute, the OTel blind spot
    assert "INSERT INTO t VALUES (?, ?)" in sqls and "SELECT 42" in sqls  # executemany, user factory
    assert "SELECT count(*) FROM t WHERE b = :b" in sqls  # cursor.execute, named parameters
    assert (frame["duration_ms"] > 0).all() and frame["request_id"].is_null().all()
    rows = dict(zip(frame["sql"], frame["rows"], strict=False))
    assert rows["INSERT INTO t VALUES (?, ?)"] == 100 and rows["SELECT b FROM t WHERE a = ?"] == 1
    params = frame.filter(pl.col("sql") == "SELECT b FROM t WHERE a = ?")["params"].to_list()
    assert params == ["[0]", "[1]", "[2]"]


BIG_PARAMS = textwrap.dedent(
    """
    import sqlite3
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE d (body TEXT, blob BLOB)")
    con.execute("INSERT INTO d VALUES (?, ?)", ("x" * 50000, b"\\x01" * 50000))
    con.execute("INSERT INTO d VALUES (?, ?)", ("short", b"\\x02\\x03"))
    """
)


def test_parameters_are_bounded_in_size(tmp_path):
    """A 50 kB text keeps its first MAX_PARAM_CHARS characters, a 50 kB blob only its length."""
    from tasks.agents.database.sqlcapture.inject.perfagents_capturelog import MAX_PARAM_CHARS

    log_dir = tmp_path / "log"
    run_python(sys.executable, ["-c", BIG_PARAMS], clean_env(**capture_env(log_dir, {})), tmp_path)
    params = read_statements(log_dir).filter(pl.col("sql").str.starts_with("INSERT"))["params"].to_list()
    big, small = (json.loads(p) for p in params)
    assert big == ["x" * MAX_PARAM_CHARS, {"$bytes_len": 50000}]
    assert small == ["short", {"$bytes": "0203"}]
    assert sum(f.stat().st_size for f in log_dir.glob("sql-*.jsonl")) < 10 * MAX_PARAM_CHARS


PAUSABLE = textwrap.dedent(
    """
    import sqlite3, sys, time
    con = sqlite3.connect(":memory:")
    for phase in ("a", "b", "c"):
        end = time.time() + 0.8
        while time.time() < end:
            con.execute(f"SELECT '{phase}'").fetchall()
            time.sleep(0.002)
        open(sys.argv[1] + "." + phase, "w").close()
        while not __import__("os").path.exists(sys.argv[1] + ".go-" + phase):
            time.sleep(0.01)
    """
)


def test_a_paused_capture_records_nothing_until_resumed(tmp_path):
    """The windows that decide pause the capture (their target carries no capture cost)."""
    log_dir = tmp_path / "log"
    env = clean_env(**capture_env(log_dir, {}))
    marks = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", PAUSABLE, str(marks)], env=env, cwd=tmp_path)

    def after(phase: str, then_capture: bool | None) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not Path(f"{marks}.{phase}").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        if then_capture is not None:
            set_capture(log_dir, on=then_capture)
            time.sleep(0.6)  # the writer thread reads the switch every 0.25 s
        Path(f"{marks}.go-{phase}").touch()

    try:
        after("a", then_capture=False)
        after("b", then_capture=True)
        after("c", then_capture=None)
        proc.wait(RUN_TIMEOUT_S)
    finally:
        proc.kill()
    sqls = read_statements(log_dir)["sql"].to_list()
    assert sqls.count("SELECT 'a'") > 20 and sqls.count("SELECT 'c'") > 20
    assert sqls.count("SELECT 'b'") == 0


@pytest.mark.parametrize("python", [p for p in OTHER_PYTHONS if p.exists()][:2], ids=lambda p: p.parent.parent.name)
def test_works_in_another_python_version(tmp_path, python):
    log_dir = tmp_path / "log"
    out = run_python(python, ["-c", SCRIPT, str(tmp_path / "x.db")], clean_env(**capture_env(log_dir, {})), tmp_path)
    assert out.strip() == "ok"
    frame = read_statements(log_dir)
    assert frame["sql"].to_list().count("SELECT b FROM t WHERE a = ?") == 3


def test_forked_child_writes_its_own_file(tmp_path):
    script = textwrap.dedent(
        """
        import os, sqlite3, sys, time
        con = sqlite3.connect(":memory:")
        con.execute("SELECT 'parent'").fetchall()
        pid = os.fork()
        if pid == 0:
            con.execute("SELECT 'child'").fetchall()
            time.sleep(1.2)  # the child's writer thread flushes; os._exit skips atexit
            os._exit(0)
        os.waitpid(pid, 0)
        print(pid)
        """
    )
    log_dir = tmp_path / "log"
    child = int(run_python(sys.executable, ["-c", script], clean_env(**capture_env(log_dir, {})), tmp_path))
    frame = read_statements(log_dir)
    by_sql = dict(zip(frame["sql"], frame["pid"], strict=True))
    assert by_sql["SELECT 'child'"] == child and by_sql["SELECT 'parent'"] != child
    assert len(list(log_dir.glob("sql-*.jsonl"))) == 2


def make_venv(path: Path) -> Path:
    """A real virtualenv with its own interpreter path; our site-packages reachable through a .pth."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(path)], check=True, timeout=RUN_TIMEOUT_S)
    purelib = subprocess.run([str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT_S).stdout.strip()
    (Path(purelib) / "perfagents_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path / "bin" / "python"


def test_uvicorn_target_in_its_own_venv_attributes_requests(tmp_path):
    python = make_venv(tmp_path / "venv")
    db = tmp_path / "app.db"
    target_app.seed(str(db))
    log_dir = sql_log_dir(tmp_path)
    with target_app.serve(str(python), db, capture_env(log_dir, {}), tmp_path / "app.log") as base:
        with httpx.Client(base_url=base, timeout=10) as client:
            for uid in (1, 2, 3):
                assert client.get(f"/users/{uid}/orders").status_code == 200
            assert client.get("/orders/latest").status_code == 200
            assert client.get("/items", params={"category": "cat1", "color": "color2"}).status_code == 200
    frame = read_statements(log_dir)
    assert frame["pid"].n_unique() == 1
    exe = run_python(python, ["-c", "import sys; print(sys.executable)"], clean_env(), tmp_path).strip()
    assert Path(exe).parent == python.parent  # the target really ran another interpreter path
    orders = frame.filter(pl.col("sql").str.starts_with("SELECT id, amount FROM orders"))
    assert orders["path"].to_list() == ["/users/1/orders", "/users/2/orders", "/users/3/orders"]
    assert orders["route"].unique().to_list() == ["/users/{uid:int}/orders"]
    assert orders["request_id"].n_unique() == 3 and orders["method"].unique().to_list() == ["GET"]
    latest = frame.filter(pl.col("path") == "/orders/latest")
    assert latest.height == 1 + target_app.N_PLUS_ONE and latest["request_id"].n_unique() == 1
    items = frame.filter(pl.col("path") == "/items")  # an async endpoint: runs on the event loop thread
    assert items.height == 1 and items["rows"][0] > 0


def test_records_of_the_older_shorter_format_still_read(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    old = [1.0, 0.5, "SELECT 1", 7, 1, None, None, None, None, 1, None]  # a record of the 11-field format
    newer = [2.0, 0.5, "SELECT 2", 7, 1, None, None, None, None, 1, [2], ["app:f:3"], "a later field"]
    broken = [3.0, 0.5, "SELECT 3"]
    (log_dir / "sql-7-1000.jsonl").write_text(json.dumps([old, newer, broken]) + "\n")
    frame = read_statements(log_dir)
    assert frame["sql"].to_list() == ["SELECT 1", "SELECT 2"]
    assert frame["stack"].to_list() == [None, ["app:f:3"]] and frame["params"].to_list() == [None, "[2]"]
    assert read_statements(log_dir, with_stack_only=True)["sql"].to_list() == ["SELECT 2"]


def test_a_growing_file_is_read_again_from_where_the_last_read_ended(tmp_path):
    """A profiling window's agent reads the same growing files several times: what was parsed
    is kept, a line still being written waits for its newline, and a file replaced by another
    one of the same name (a new inode) or cut short is read from its start (the capture only
    appends, so a file rewritten to its old size or longer is not expected)."""
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    path = log_dir / "sql-7-1000.jsonl"

    def record(ts: float, sql: str) -> list:
        return [ts, 0.5, sql, 7, 1, None, None, None, None, 1, {"id": int(ts)}, ["app:f:3"], "reviews"]

    path.write_text(json.dumps([record(1.0, "SELECT 1"), record(2.0, "SELECT 2")]) + "\n")
    assert read_statements(log_dir)["sql"].to_list() == ["SELECT 1", "SELECT 2"]
    with path.open("a") as out:
        out.write(json.dumps([record(3.0, "SELECT 3")]) + "\n" + json.dumps([record(4.0, "SELECT 4")])[:20])
    frame = read_statements(log_dir, since=2.0)
    assert frame["sql"].to_list() == ["SELECT 2", "SELECT 3"]  # the cut line is not read yet
    assert frame["params"].to_list() == ['{"id": 2}', '{"id": 3}']
    with path.open("a") as out:
        out.write(json.dumps([record(4.0, "SELECT 4")])[20:] + "\n")
    assert read_statements(log_dir, since=3.5)["sql"].to_list() == ["SELECT 4"]
    assert read_statements(log_dir, until=2.5, with_params_only=True)["sql"].to_list() == ["SELECT 1", "SELECT 2"]

    replaced = log_dir / "replaced.tmp"
    replaced.write_text(json.dumps([record(9.0, "SELECT 9")]) + "\n")
    replaced.replace(path)
    assert read_statements(log_dir)["sql"].to_list() == ["SELECT 9"]
    path.write_text(json.dumps([[5.0, 0.5, "SELECT 5", 7, 1, None, None, None, None, 1, None]]) + "\n")  # cut short
    assert read_statements(log_dir)["sql"].to_list() == ["SELECT 5"]
