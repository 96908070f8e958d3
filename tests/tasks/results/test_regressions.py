"""`perfagents regressions` on a store filled through Store methods: a planted step is reported
confirmed (exit 1), a clean history is not (exit 0), bad input is one line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import main
from tasks.results.regressions import find_regressions
from tasks.store import Store

PERFAGENTS = Path(sys.executable).parent / "perfagents"


def fill(path: Path, add_history_run, *, step_from: int | None, runs: int = 8, target: str = "shop") -> None:
    with Store(path) as store:
        for i in range(runs):
            slow = {"checkout": 1.3} if step_from is not None and i >= step_from else {}
            add_history_run(store, f"{target}-run{i}", day=i, target=target, scale=slow, seed=100 + i)


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_a_planted_step_is_a_confirmed_open_regression(tmp_path: Path, add_history_run, capsys) -> None:
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=5)
    code, out, _ = cli("regressions", "--store", str(path), "--json", str(tmp_path / "r.json"), capsys=capsys)
    assert code == 1 and "checkout" in out
    found = json.loads((tmp_path / "r.json").read_text())
    confirmed = [r for r in found["regressions"] if r["status"] == "confirmed"]
    assert confirmed and {r["endpoint"] for r in confirmed} <= {"checkout", "total"}
    p95 = next(r for r in confirmed if r["endpoint"] == "checkout" and r["metric"] == "p95_ms")
    assert p95["run_id"] == "shop-run5" and p95["open"] and p95["runs_after"] == 3
    assert 1.2 < p95["size"] < 1.4 and p95["ci95"][0] > 1.1 and p95["false_alarm_rate"] < 0.01
    assert found["open_confirmed"] >= 1 and found["series"] == 15 and found["not_judged"] == []
    assert not [r for r in found["regressions"] if r["endpoint"] == "catalog"]


def test_a_clean_history_exits_0(tmp_path: Path, add_history_run, capsys) -> None:
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=None)
    code, out, _ = cli("regressions", "--store", str(path), "--target", "shop", capsys=capsys)
    assert code == 0 and "15 series judged" in out and "0 confirmed and open" in out


def test_a_step_in_the_latest_run_waits_for_confirmation(tmp_path: Path, add_history_run) -> None:
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=7)
    with Store(path, read_only=True) as store:
        found = find_regressions(store, "shop")
    step = [r for r in found["regressions"] if r["endpoint"] == "checkout" and r["metric"] == "p95_ms"]
    assert step and step[0]["status"] == "suspected" and step[0]["run_id"] == "shop-run7"
    assert found["open_confirmed"] == 0


def test_without_aa_windows_nothing_is_judged(tmp_path: Path, add_history_run) -> None:
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=5)
    with Store(path) as store:
        store.rows("UPDATE windows SET valid = false")
        found = find_regressions(store)
    assert found["regressions"] == [] and found["series"] == 0 and len(found["not_judged"]) == 15


def test_the_null_comes_from_aa_windows_of_the_series_load_shape(tmp_path: Path, add_history_run) -> None:
    """A/A windows measured under another load (here 10x noisier) do not calibrate the series."""
    from tasks.results.signature import stored_load_shape
    from tasks.store import dumps

    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=5)
    load, other = {"users": 10, "duration_s": 20}, {"users": 40, "duration_s": 60}
    with Store(path) as store:
        with store.transaction() as con:
            con.execute("UPDATE runs SET spec = ?", [dumps({"load": load})])
            con.execute("UPDATE signatures SET load_shape = ?", [stored_load_shape(load)])
        alone = find_regressions(store, "shop")
        for k in range(3):
            add_history_run(store, f"other{k}", day=30 + k, seed=200 + k, window_sd=0.3)
        with store.transaction() as con:
            con.execute("DELETE FROM signatures WHERE run_id LIKE 'other%'")
            con.execute("UPDATE runs SET spec = ? WHERE run_id LIKE 'other%'", [dumps({"load": other})])
        beside = find_regressions(store, "shop")
        with store.transaction() as con:  # the same windows with no spec stored: they join every shape's null
            con.execute("UPDATE runs SET spec = '{}'")
        mixed = find_regressions(store, "shop")
    assert alone["open_confirmed"] >= 1 and beside == alone
    assert mixed != alone


def test_bad_input_is_one_line_exit_2(tmp_path: Path, add_history_run, capsys) -> None:
    code, _, err = cli("regressions", "--store", str(tmp_path / "none.duckdb"), capsys=capsys)
    assert code == 2 and "no store" in err and len(err.strip().splitlines()) == 1
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=None, runs=2)
    code, _, err = cli("regressions", "--store", str(path), "--target", "nope", capsys=capsys)
    assert code == 2 and "no signatures of target 'nope'" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("regressions", "--store", str(path), "--json", str(tmp_path), capsys=capsys)
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


def test_the_console_script_exits_1_on_a_confirmed_regression(tmp_path: Path, add_history_run) -> None:
    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=4)
    proc = subprocess.run([str(PERFAGENTS), "regressions", "--store", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "confirmed" in proc.stdout and "shop-run4" in proc.stdout


def test_the_nightly_check_s_artifact_and_events(tmp_path: Path, add_history_run) -> None:
    from flows.regressions import REGRESSION_EVENT, regression_events
    from tasks.results.regressions import render_regressions

    path = tmp_path / "s.duckdb"
    fill(path, add_history_run, step_from=5)
    with Store(path, read_only=True) as store:
        found = find_regressions(store, "shop")
    text = render_regressions(found)
    assert text.startswith(f"# Regressions: 15 series judged, {found['open_confirmed']} confirmed and open")
    p95 = next(r for r in found["regressions"] if r["endpoint"] == "checkout" and r["metric"] == "p95_ms")
    assert (f"| shop | checkout | p95_ms | shop-run5 | x{p95['size']:.3g} | [{p95['ci95'][0]:.3g}, {p95['ci95'][1]:.3g}] "
            f"| < 0.05% | confirmed, open |") in text
    events = regression_events(found)
    assert len(events) == found["open_confirmed"] and {e["event"] for e in events} == {REGRESSION_EVENT}
    assert {e["resource"]["prefect.resource.id"] for e in events} == {"perfagents.target.shop"}
    assert {"target": "shop", "endpoint": "checkout", "metric": "p95_ms", "run_id": "shop-run5"}.items() <= next(
        e["payload"] for e in events if e["payload"]["metric"] == "p95_ms" and e["payload"]["endpoint"] == "checkout").items()
    suspected = dict(found, regressions=[dict(r, status="suspected") for r in found["regressions"]])
    assert regression_events(suspected) == []
