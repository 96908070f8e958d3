from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tasks.changes.journal import apply_candidate, open_changes, plan_change, revert_pending
from tasks.changes.runtime import Runtime
from tasks.errors import RefusedError
from tasks.findings import Candidate
from tasks.spec import TargetSpec


def make_db(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER)")
    con.executemany("INSERT INTO orders (customer_id) VALUES (?)", [(i % 50,) for i in range(500)])
    con.commit()
    con.close()


def indexes(path: Path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        con.close()


def runtime(tmp_path: Path, allow_ddl: bool = True) -> Runtime:
    db = tmp_path / "shop.db"
    make_db(db)
    spec = TargetSpec(name="t", base_url="http://127.0.0.1:1", load={"endpoints": [{"name": "a", "path": "/"}]},
                      database={"url": f"sqlite:///{db}", "allow_ddl": allow_ddl})
    return Runtime(spec=spec, workdir=tmp_path, handle=None, config={}, database_url=f"sqlite:///{db}")  # type: ignore[arg-type]


INDEX = Candidate(kind="create_index", description="index orders.customer_id",
                  params={"table": "orders", "columns": ["customer_id"], "name": "perfagents_orders_customer_id"})


def test_journal_then_apply_then_revert_after_crash(store, tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    change_id = plan_change(store, "run1", "t", 1, INDEX)
    assert open_changes(store)[0]["status"] == "planned"
    apply_candidate(store, rt, change_id, INDEX)
    assert "perfagents_orders_customer_id" in indexes(tmp_path / "shop.db")
    # the run dies here; a later `perfagents revert` works from the journal alone
    done = revert_pending(store)
    assert [note for _, note in done] == ["dropped index perfagents_orders_customer_id"]
    assert "perfagents_orders_customer_id" not in indexes(tmp_path / "shop.db")
    assert store.rows("SELECT status FROM changes")[0]["status"] == "reverted"
    assert open_changes(store) == []


def test_ddl_refused_without_allow_ddl(store, tmp_path: Path) -> None:
    rt = runtime(tmp_path, allow_ddl=False)
    change_id = plan_change(store, "run1", "t", 1, INDEX)
    with pytest.raises(RefusedError):
        apply_candidate(store, rt, change_id, INDEX)
    assert store.rows("SELECT status FROM changes")[0]["status"] == "failed"
    assert indexes(tmp_path / "shop.db") == set()


def test_identifiers_are_checked_and_quoted(store, tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    evil = Candidate(kind="create_index", description="x",
                     params={"table": "orders", "columns": ['customer_id"); DROP TABLE orders; --'], "name": "ix"})
    with pytest.raises(RefusedError, match="no column"):
        apply_candidate(store, rt, plan_change(store, "run1", "t", 1, evil), evil)
    assert indexes(tmp_path / "shop.db") == set()


def test_each_kind_journals_its_provisional_undo_before_applying(store, tmp_path: Path) -> None:
    """A crash mid-apply leaves the kind's provisional undo in the journal, and revert works from it."""
    from tasks.changes import CHANGE_KINDS

    rt = runtime(tmp_path)
    rt.spec.knobs.update(TargetSpec(name="k", base_url="http://127.0.0.1:1", load={"endpoints": [{"name": "a", "path": "/"}]},
                                    knobs={"workers": {"type": "int", "low": 1, "high": 4, "default": 1,
                                                       "apply": {"env": "W"}}}).knobs)
    rt.config = {"workers": 2}
    assert CHANGE_KINDS["create_index"].provisional_undo(rt, dict(INDEX.params)) == {
        "database_url": rt.database_url, "index": "perfagents_orders_customer_id"}
    assert CHANGE_KINDS["set_knob"].provisional_undo(rt, {"knob": "workers", "value": 3}) == {"knob": "workers", "value": 2}
    assert CHANGE_KINDS["set_config"].provisional_undo(rt, {"config": {"workers": 3, "gone": 1}}) == {
        "config": {"workers": 2}, "http": {}}
    change_id = plan_change(store, "run1", "t", 1, INDEX)
    store.update_change(change_id, "planned", undo=CHANGE_KINDS["create_index"].provisional_undo(rt, dict(INDEX.params)))
    assert [note for _, note in revert_pending(store)] == ["dropped index perfagents_orders_customer_id"]


def test_a_revert_that_fails_with_any_error_leaves_the_others_reverted_and_itself_applied(store, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    rt_first, rt_second = runtime(first), runtime(second)
    ids = []
    for rt in (rt_first, rt_second):
        change_id = plan_change(store, "run1", "t", len(ids) + 1, INDEX)
        apply_candidate(store, rt, change_id, INDEX)
        ids.append(change_id)
    (first / "shop.db").write_bytes(b"garbage" * 1000)  # sqlite3 itself fails ("not a database"), not our code
    done = revert_pending(store)
    notes = {row["change_id"]: note for row, note in done}
    assert notes[ids[0]].startswith("could not revert: ") and "\n" not in notes[ids[0]]
    assert notes[ids[1]] == "dropped index perfagents_orders_customer_id"
    status = {r["change_id"]: r["status"] for r in store.rows("SELECT change_id, status FROM changes")}
    assert status == {ids[0]: "applied", ids[1]: "reverted"}


def test_a_new_run_refuses_a_target_with_changes_left_open(tmp_path: Path) -> None:
    """A killed run's applied index: the CLI refuses a new run of that target in one line, exit 2,
    the store unchanged; after `perfagents revert` it starts (here: fails later, on the closed port)."""
    import hashlib
    import subprocess
    import sys

    import yaml

    from tasks.store import Store

    rt = runtime(tmp_path)
    store_path = tmp_path / "store.duckdb"
    with Store(store_path) as store:
        change_id = plan_change(store, "r-killed", "t", 1, INDEX)
        apply_candidate(store, rt, change_id, INDEX)
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({"name": "t", "base_url": "http://127.0.0.1:9",
                                    "load": {"endpoints": [{"name": "a", "path": "/"}]}}))
    perfagents = Path(sys.executable).parent / "perfagents"

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(perfagents), "run", str(spec), "--store", str(store_path)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    before = hashlib.sha256(store_path.read_bytes()).hexdigest()
    proc = run()
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "left open by run r-killed" in proc.stderr and "perfagents revert" in proc.stderr
    assert hashlib.sha256(store_path.read_bytes()).hexdigest() == before
    with Store(store_path) as store:
        revert_pending(store)
    proc = run()
    assert proc.returncode == 2 and "unreachable" in proc.stderr, proc.stderr  # past the check


def test_a_crash_between_journal_and_apply_is_undone_right_from_any_folder(tmp_path: Path, store, monkeypatch) -> None:
    """The provisional undo holds the database's absolute path (revert runs from elsewhere), and
    an index of the same name that existed before (an earlier run kept it) is left in place."""
    from tasks.changes import CHANGE_KINDS

    db = tmp_path / "shop.db"
    make_db(db)
    monkeypatch.chdir(tmp_path)
    spec = TargetSpec(name="t", base_url="http://127.0.0.1:1", load={"endpoints": [{"name": "a", "path": "/"}]},
                      database={"url": "sqlite:///shop.db", "allow_ddl": True})
    rt = Runtime(spec=spec, workdir=tmp_path, handle=None, config={}, database_url="sqlite:///shop.db")  # type: ignore[arg-type]
    kind = CHANGE_KINDS["create_index"]
    provisional = kind.provisional_undo(rt, dict(INDEX.params))
    assert provisional["database_url"] == f"sqlite:///{db}" and "existed" not in provisional
    kind.apply(rt, dict(INDEX.params))  # applied; the process dies before the journal says so
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert kind.revert(None, provisional) == f"dropped index {INDEX.params['name']}"
    assert INDEX.params["name"] not in indexes(db)

    monkeypatch.chdir(tmp_path)
    kind.apply(rt, dict(INDEX.params))  # an earlier run kept it
    again = kind.provisional_undo(rt, dict(INDEX.params))
    assert again.get("existed") is True
    assert "left in place" in kind.revert(None, again)
    assert INDEX.params["name"] in indexes(db)


def test_a_live_knob_of_a_target_the_run_started_and_lost_needs_no_restore(tmp_path: Path) -> None:
    """The kill campaign's finding: after a SIGKILL the target the run started is gone, and a live
    (HTTP) knob's value died with it; an attached target's knob still has to be restored."""
    import types

    from tasks.changes import CHANGE_KINDS
    from tasks.errors import TargetUnreachableError
    from tasks.target import free_port

    knob = {"type": "int", "low": 0, "high": 20, "default": 0,
            "apply": {"http": {"method": "PUT", "path": "/admin/config", "field": "ttl"}}}
    port = free_port()  # nothing listens there

    def undo_for(start: dict | None) -> dict:
        spec = TargetSpec(name="t", base_url=f"http://127.0.0.1:{port}", start=start, knobs={"ttl": knob},
                          load={"endpoints": [{"name": "a", "path": "/"}]})
        handle = types.SimpleNamespace(base_url=f"http://127.0.0.1:{port}")
        rt = Runtime(spec=spec, workdir=tmp_path, handle=handle, config={"ttl": 0})  # type: ignore[arg-type]
        return CHANGE_KINDS["set_knob"].provisional_undo(rt, {"knob": "ttl", "value": 10})

    started = undo_for({"command": ["python", "app.py"]})
    assert started.get("started_by_run") is True
    assert "gone" in CHANGE_KINDS["set_knob"].revert(None, started)
    attached = undo_for(None)
    assert "started_by_run" not in attached
    with pytest.raises(TargetUnreachableError):
        CHANGE_KINDS["set_knob"].revert(None, attached)
