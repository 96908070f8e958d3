"""The dashboard during a real run: `perfagents dashboard` serves while `perfagents run` writes the
same store (the mini target, 2.5 s windows, one knob tried), read over HTTP and in real Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tasks.agents.frontend.agent import CHROMIUM_ARGS, SKIP_REASON, find_chromium
from tasks.store import Store

ROOT = Path(__file__).resolve().parents[2]
MINI = Path(__file__).resolve().parent / "mini_target"
PERFAGENTS = Path(sys.executable).parent / "perfagents"
SCREENSHOT = ROOT / "docs" / "dashboard.png"  # the README's picture: rewritten only with PERFAGENTS_UPDATE_SCREENSHOT=1
RUN_TIMEOUT_S = 240  # each test took 35-39 s at load average ~2, 60-170 s at load average 5-14
SAMPLER = """window.__seen = {rows: 0, live: false};
setInterval(() => {
  window.__seen.rows = Math.max(window.__seen.rows, document.querySelectorAll('#windows tbody tr').length);
  const live = document.querySelector('#live');
  if (live && live.dataset.underLoad === '1' && Number(live.dataset.requests) > 0) window.__seen.live = true;
}, 100);"""
SEEN = "window.__seen.rows >= 3 && window.__seen.live"
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_prefect_api", "agents_off")]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def dashboard(store: Path) -> Iterator[str]:
    """`perfagents dashboard` on a free port; yields its URL once it answers."""
    port = free_port()
    log = (store.parent / "dashboard.log").open("wb")
    proc = subprocess.Popen([str(PERFAGENTS), "dashboard", "--store", str(store), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (store.parent / "dashboard.log").read_text()
            try:
                if httpx.get(url + "api/runs", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not answer within 30 s"
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)
        log.close()


@contextmanager
def mini_run(tmp_path: Path, store: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`perfagents run` on the mini target: A/A windows, then the `cache` knob on trial."""
    spec = yaml.safe_load((MINI / "target.yaml").read_text())
    spec["start"]["cwd"] = str(MINI)
    spec["load"].update(duration_s=2, warmup_s=0.5)
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    # the live row twice a second; these tests judge the page, not measurements: beside other work
    # (CI's parallel session, other runs on the machine) the gate must not re-measure every window
    env = {**os.environ, "PERFAGENTS_LIVE_INTERVAL_S": "0.5", "PERFAGENTS_MAX_FOREIGN_CORES": "4"}
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([str(PERFAGENTS), "run", str(path), "--store", str(store), "--budget", "iterations=1",
                             "--json", str(tmp_path / "out.json")], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc)
        log.close()


def test_api_runs_is_read_while_the_run_writes(tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    Store(store)  # the project's store exists before the dashboard starts
    seen: list[tuple[str, int]] = []
    live_requests: list[int] = []
    with dashboard(store) as url, mini_run(tmp_path, store) as run:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while run.poll() is None and time.monotonic() < deadline:
            response = httpx.get(url + "api/runs", timeout=20)
            assert response.status_code == 200, response.text
            runs = response.json()
            if runs:
                seen.append((runs[0]["status"], runs[0]["windows"]))
                live = httpx.get(url + f"api/runs/{runs[0]['run_id']}", timeout=20).json()["live"]
                if live and live["under_load"]:
                    live_requests.append(live["requests"])
            time.sleep(0.2)
        assert run.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()[-2000:]
        (final,) = httpx.get(url + "api/runs", timeout=20).json()
    running = {windows for status, windows in seen if status == "running"}
    assert len(running) >= 3  # windows arrived one by one while the run held the store between writes
    assert max(live_requests, default=0) > 0  # the window under load, with its requests so far
    assert final["status"] != "running" and final["after_p95_ms"] > 0 and final["before_rps"] > 0
    assert set(final) >= {"run_id", "target", "status", "started_at", "before_p95_ms", "after_p95_ms",
                          "before_rps", "after_rps"}


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
def test_the_page_shows_a_finished_window_appear_without_reloading(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = tmp_path / "store.duckdb"
    Store(store)
    with dashboard(store) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, timeout=15_000)
            page.evaluate("window.__loadedOnce = true")
            # the page is sampled every 100 ms, so a live state it showed between two of our reads counts
            # (a busy CI machine once left fewer than 60 s between the third window and the run's end)
            page.evaluate(SAMPLER)
            with mini_run(tmp_path, store) as run:
                page.wait_for_selector("#runs tbody tr[data-run]", timeout=60_000)
                before = page.locator("#windows tbody tr").count()
                page.wait_for_function(f"document.querySelectorAll('#windows tbody tr').length > {before}",
                                       timeout=60_000)
                assert page.evaluate("window.__loadedOnce") is True  # the same page: never reloaded
                deadline = time.monotonic() + RUN_TIMEOUT_S
                while run.poll() is None and time.monotonic() < deadline and not page.evaluate(SEEN):
                    page.wait_for_timeout(200)
                page.wait_for_timeout(300)  # the charts' last redraw
                shot = SCREENSHOT if os.environ.get("PERFAGENTS_UPDATE_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)  # a test run leaves the work tree as it was
                assert run.wait(timeout=RUN_TIMEOUT_S) == 0, (tmp_path / "run.log").read_text()[-2000:]
            seen = page.evaluate("window.__seen")
            assert seen["rows"] >= 3, (seen, (tmp_path / "run.log").read_text()[-2000:])
            assert seen["live"], (seen, (tmp_path / "run.log").read_text()[-2000:])  # a window under load, its requests so far
            page.wait_for_function("!document.querySelector('#runs tbody tr[data-run] .status-running')", timeout=10_000)
            assert page.evaluate("window.__loadedOnce") is True
        finally:
            browser.close()
