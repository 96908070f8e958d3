"""The advisor in the loop, end to end: the real CLI, a tiny target with a planted N+1 in a
temporary git work tree, and the real openai client against the local replay server
(tests/tasks/advisor/replay_server.py) answering from tests/flows/recorded_answers/."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

HERE = Path(__file__).resolve().parent
TARGET = HERE / "advisor_target"
ANSWERS = HERE / "recorded_answers"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_prefect_api", "only_database_agent")]

_spec = importlib.util.spec_from_file_location(
    "advisor_replay_server", HERE.parent / "tasks" / "advisor" / "replay_server.py")
assert _spec and _spec.loader
replay_server = sys.modules.get(_spec.name) or importlib.util.module_from_spec(_spec)
if _spec.name not in sys.modules:
    sys.modules[_spec.name] = replay_server
    _spec.loader.exec_module(replay_server)
MODELS = [{"name": "small-model", "usd_per_1m_input": 0.25, "usd_per_1m_output": 2.0},
          {"name": "large-model", "usd_per_1m_input": 3.0, "usd_per_1m_output": 15.0}]


@pytest.fixture
def only_database_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    """The N+1 is the database agent's finding: the other agents' profiling is not needed."""
    monkeypatch.setenv("PERFAGENTS_AGENTS", "database")
    monkeypatch.setenv("PERFAGENTS_MAX_FOREIGN_CORES", "2")  # a shared 2-core test machine


def answers(*names: str) -> list[dict]:
    return [json.loads((ANSWERS / f"{n}.json").read_text()) | {"file": n} for n in names]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def work_tree(tmp_path: Path, server_url: str, quality: list[str] | None = None, **llm) -> Path:
    """tmp_path/src: a git work tree holding the app; tmp_path/target.yaml: its spec with llm:."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("app.py", "seed.py"):
        shutil.copy(TARGET / name, src / name)
    (src / ".gitignore").write_text("__pycache__/\n")
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "app")
    spec = yaml.safe_load((TARGET / "target.yaml").read_text())
    spec["llm"] = {"base_url": server_url, "api_key_env": "PERFAGENTS_TEST_NO_KEY", "models": MODELS,
                   "max_context_tokens": 2000, "max_output_tokens": 600, **llm}
    if quality is not None:
        spec["quality_metrics"] = quality
    (tmp_path / "target.yaml").write_text(yaml.safe_dump(spec))
    return src


def perfagents(tmp_path: Path, *args: str, store: Path | None = None) -> subprocess.CompletedProcess:
    store = store or tmp_path / ".perfagents" / "store.duckdb"
    return subprocess.run([str(PERFAGENTS), "run", str(tmp_path / "target.yaml"), "--store", str(store),
                           "--json", str(tmp_path / "out.json"), "--quiet", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)


def run_ok(tmp_path: Path, *args: str, store: Path | None = None) -> dict:
    t0 = time.monotonic()
    proc = perfagents(tmp_path, *args, store=store)
    print(f"perfagents run: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "out.json").read_text())


def tree_bytes(src: Path) -> dict[str, bytes]:
    return {str(p.relative_to(src)): p.read_bytes() for p in sorted(src.rglob("*"))
            if p.is_file() and ".git" not in p.parts and "__pycache__" not in p.parts}


@pytest.fixture
def replay():
    server = replay_server.ReplayServer(answers("joined", "no_patch")).start()
    yield server
    server.stop()


def test_a_correct_patch_is_kept_with_its_gain_and_a_rerun_is_a_cache_hit(tmp_path: Path, replay) -> None:
    src = work_tree(tmp_path, replay.url, quality=["error_rate<=0.01", "responses==baseline"])  # the JOIN answers the same
    # room for the trial's every look: beside another test's run the A/A windows spread ~0.5 and
    # two patch windows left x0.64 [0.43, 1.00] undecided (a full local run, 2026-12-05)
    budget = ("--budget", "iterations=1,load_s=75")
    result = run_ok(tmp_path, *budget)
    (change,) = [c for c in result["changes"] if c["kind"] == "code_patch"]
    assert change["status"] == "kept", change["reason"]
    effect = change["effect"]
    if effect["metric"] == "rps":  # a saturated target (a busy CI machine) is judged on its throughput
        assert effect["ratio"] > 1.25 and effect["ci95"][0] > 1.0, effect
    else:
        assert effect["ratio"] < 0.8 and effect["ci95"][1] < 1.0, effect
    assert "JOIN customers" in (src / "app.py").read_text()  # applied in the work tree, not committed
    assert git(src, "status", "--porcelain", "app.py").startswith(" M")
    patch = Path(change["patch"])
    assert patch.parent == (tmp_path / ".perfagents" / "patches").resolve() and "ratio" in patch.read_text()
    llm = result["llm"]
    assert llm["calls"] == 1 and llm["tokens_in"] == replay.prompt_tokens_reported
    assert result["costs"]["tokens"] == llm["tokens_in"] + llm["tokens_out"] > 0
    assert all(r["usage"]["prompt_tokens"] <= 2000 for r in replay.requests)
    print(f"kept: {effect['metric']} ratio {effect['ratio']:.3f} CI {effect['ci95']}, tail {effect.get('tail')}, "
          f"tokens {llm['tokens_in']}+{llm['tokens_out']}, status {result['status']}")

    # a second run on a fresh copy of the same source, same store: the cached answer, 0 tokens
    shutil.rmtree(src)
    (tmp_path / "target.yaml").unlink()
    calls = len(replay.requests)
    work_tree(tmp_path, replay.url)
    again = run_ok(tmp_path, *budget)
    assert len(replay.requests) == calls
    assert again["llm"]["calls"] == 0 and again["llm"]["cache_hits"] == 1 and again["costs"]["tokens"] == 0
    assert [c["status"] for c in again["changes"] if c["kind"] == "code_patch"] == ["kept"]


def test_a_patch_that_does_not_apply_escalates_and_changes_nothing(tmp_path: Path) -> None:
    server = replay_server.ReplayServer(answers("stale_context", "no_patch")).start()
    try:
        src = work_tree(tmp_path, server.url)
        before = tree_bytes(src)
        result = run_ok(tmp_path)
        assert [r["body"]["model"] for r in server.requests] == ["small-model", "large-model"]  # escalated
    finally:
        server.stop()
    assert result["changes"] == [] and tree_bytes(src) == before
    assert any(f["kind"] == "n_plus_one" and f["location"] == "app:list_reviews" for f in result["findings"])
    assert result["llm"]["calls"] == 2 and set(result["llm"]["by_model"]) == {"small-model", "large-model"}


def test_reverted_patches_escalate_and_the_tree_is_restored_byte_for_byte(tmp_path: Path) -> None:
    """The small model's patch is faster but drops a field (responses differ: reverted), the
    question goes to the large model in the same run, whose patch is slower (reverted)."""
    server = replay_server.ReplayServer(answers("changes_responses", "slower_large")).start()
    try:
        src = work_tree(tmp_path, server.url, quality=["error_rate<=0.01", "responses==baseline"])
        before = tree_bytes(src)
        result = run_ok(tmp_path, "--budget", "iterations=2,load_s=60")
        models = [r["body"]["model"] for r in server.requests]
    finally:
        server.stop()
    assert models == ["small-model", "large-model"]  # escalated after the first patch was reverted
    changed, slower = [c for c in result["changes"] if c["kind"] == "code_patch"]
    assert changed["status"] == "reverted" and "responses==baseline" in changed["reason"], changed["reason"]
    assert slower["status"] == "reverted" and "responses" not in slower["reason"], slower["reason"]
    assert tree_bytes(src) == before and git(src, "status", "--porcelain") == ""
    assert Path(changed["patch"]).is_file() and Path(slower["patch"]).is_file()
    questions = result["llm"]["questions"]
    assert [q["model"] for q in questions] == ["small-model", "large-model"]
    con = duckdb.connect(str(tmp_path / ".perfagents" / "store.duckdb"), read_only=True)
    try:
        outcomes = set(con.execute("SELECT model, outcome FROM llm_answers").fetchall())
    finally:
        con.close()
    assert outcomes == {("small-model", "broke_correctness"), ("large-model", "reverted")}


def test_a_dirty_work_tree_is_refused_with_one_line(tmp_path: Path) -> None:
    src = work_tree(tmp_path, "http://127.0.0.1:9/v1")
    (src / "app.py").write_text((src / "app.py").read_text() + "\n# local edit\n")
    proc = perfagents(tmp_path)
    assert proc.returncode == 2 and "uncommitted changes" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_budget_that_runs_out_mid_run_stops_cleanly_with_an_exact_ledger(tmp_path: Path) -> None:
    server = replay_server.ReplayServer(answers("stale_context", "no_patch")).start()
    try:
        src = work_tree(tmp_path, server.url)
        before = tree_bytes(src)
        # the small model's call fits (worst case ~1,350 tokens); the large one's would pass 2,000
        result = run_ok(tmp_path, "--budget", "iterations=1,load_s=31,tokens=2000")
        reported = [r["usage"] for r in server.requests]
    finally:
        server.stop()
    assert result["status"] == "budget_exhausted" and "tokens" in result["stop_reason"]
    assert len(reported) == 1 and result["changes"] == [] and tree_bytes(src) == before
    assert result["costs"]["tokens"] == reported[0]["total_tokens"] <= 2000
    assert result["llm"]["tokens_in"] == reported[0]["prompt_tokens"]


def test_sigkill_after_a_patch_then_revert_restores_the_tree(tmp_path: Path, replay) -> None:
    src = work_tree(tmp_path, replay.url)
    before = tree_bytes(src)
    store = tmp_path / ".perfagents" / "store.duckdb"
    # the kill comes as soon as the patch is on: a load budget with room for re-measured windows
    # (the spec's 31 s ran out before the trial on a busy CI machine and the run ended without it)
    result = tmp_path / "result.json"
    run = subprocess.Popen([str(PERFAGENTS), "run", str(tmp_path / "target.yaml"), "--store", str(store), "--quiet",
                            "--budget", "iterations=1,load_s=90", "--json", str(result)],
                           cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while "JOIN customers" not in (src / "app.py").read_text():
            assert run.poll() is None, (run.stderr.read().decode()[-2000:],  # type: ignore[union-attr]
                                        json.loads(result.read_text()).get("stop_reason") if result.is_file() else None)
            assert time.monotonic() < deadline, "no patch was applied in time"
            time.sleep(0.2)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(10)
    assert tree_bytes(src) != before  # the patch outlived the killed run
    proc = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert tree_bytes(src) == before and git(src, "status", "--porcelain") == ""
    again = subprocess.run([str(PERFAGENTS), "revert", "--store", str(store)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert "nothing to revert" in again.stdout
