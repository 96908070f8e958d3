"""Web Vitals goals and quality thresholds, judged from page loads with bootstrap intervals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tasks.agents.base import AgentContext
from tasks.agents.frontend.agent import SKIP_REASON, FrontendAgent, find_chromium
from tasks.decisions.vitals import MIN_LOADS, broken_vitals, page_loads, vital_goals
from tasks.expressions import parse_expression
from tasks.spec import TargetSpec


def loads(lcp: list[float], page: str = "/", cls: float = 0.0) -> pl.DataFrame:
    observed = {"pages": {page: {"loads": [
        {"lcp_ms": v, "fcp_ms": v * 0.8, "cls": cls, "tbt_ms": 0.0, "ttfb_ms": 5.0} for v in lcp]}}}
    return page_loads(observed)


def noisy(centre: float, n: int = 8, sd: float = 0.05, seed: int = 0) -> list[float]:
    return list(centre * np.exp(np.random.default_rng(seed).normal(0, sd, n)))


def test_page_loads_keep_successful_loads_of_every_page() -> None:
    observed = {"pages": {"/a": {"loads": [{"lcp_ms": 10, "cls": 0.1}, {"error": "timeout"}]},
                          "/b": {"loads": [{"lcp_ms": 30, "fcp_ms": 20, "ttfb_ms": 1, "tbt_ms": 0, "cls": 0}]}}}
    frame = page_loads(observed)
    assert frame.get_column("page").to_list() == ["/a", "/b"]
    assert frame.get_column("lcp_ms").to_list() == [10.0, 30.0]
    assert frame.get_column("fcp_ms").to_list() == [None, 20.0]
    assert page_loads({"skipped": "no chromium"}).height == 0


def test_goal_met_or_not_with_interval_and_loads() -> None:
    state = loads(noisy(2000))
    goals = [parse_expression("lcp_ms<=2500"), parse_expression("lcp_ms<=1500"), parse_expression("p95_ms<=50")]
    rows = vital_goals(goals, state, None)
    assert set(rows) == {"lcp_ms<=2500", "lcp_ms<=1500"}  # request goals are not vitals
    met, unmet = rows["lcp_ms<=2500"], rows["lcp_ms<=1500"]
    assert met["met"] is True and unmet["met"] is False
    assert met["loads"] == 8 and 1800 < met["value"] < 2200
    lo, hi = met["ci95"]
    assert lo < met["value"] < hi and hi - lo < 300


def test_goal_on_one_page_and_too_few_loads() -> None:
    state = pl.concat([loads([100.0] * 4, page="/fast"), loads([900.0] * 4, page="/slow")])
    rows = vital_goals([parse_expression("lcp_ms[/fast]<=200"), parse_expression("lcp_ms[/slow]<=200")], state, None)
    assert rows["lcp_ms[/fast]<=200"]["met"] and not rows["lcp_ms[/slow]<=200"]["met"]
    few = vital_goals([parse_expression("lcp_ms<=2500")], loads([100.0] * (MIN_LOADS - 1)), None)["lcp_ms<=2500"]
    assert few["met"] is False and "fewer than" in few["reason"]


def test_relative_threshold_breaks_on_a_real_slowdown_only() -> None:
    limit = [parse_expression("lcp_ms<=1.1*baseline")]
    baseline = loads(noisy(1000, seed=1))
    assert broken_vitals(limit, loads(noisy(1000, seed=2)), baseline) == []  # same state: noise
    assert broken_vitals(limit, loads(noisy(1120, seed=3)), baseline) == []  # over 1.1 by a hair: not beyond doubt
    broken = broken_vitals(limit, loads(noisy(1500, seed=4)), baseline)
    assert len(broken) == 1 and "ratio to baseline" in broken[0] and "8 page loads" in broken[0]


def test_absolute_threshold_and_zero_baseline_cls() -> None:
    assert broken_vitals([parse_expression("lcp_ms<=2500")], loads(noisy(3500)), None)
    assert not broken_vitals([parse_expression("lcp_ms<=2500")], loads(noisy(2450, sd=0.2)), None)
    cls_limit = [parse_expression("cls<=1.1*baseline")]
    assert not broken_vitals(cls_limit, loads([500.0] * 4), loads([500.0] * 4))  # 0 and 0
    assert broken_vitals(cls_limit, loads([500.0] * 4, cls=0.2), loads([500.0] * 4))  # 0 -> 0.2: shifts


def test_too_few_loads_break_nothing() -> None:
    assert broken_vitals([parse_expression("lcp_ms<=100")], loads([5000.0, 6000.0]), None) == []


PAGE = b"""<!doctype html><html><head><title>v</title></head><body><h1>Vitals</h1>
<p>A paragraph large enough to be the largest contentful paint of this page.</p></body></html>"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
def test_real_chromium_page_loads_meet_an_lcp_goal(site: str, tmp_path: Path) -> None:
    spec = TargetSpec.model_validate({"name": "vitals", "base_url": site, "frontend": {"pages": ["/"], "loads": 3},
                                      "load": {"endpoints": [{"name": "home", "path": "/"}]}})
    ctx = AgentContext(spec=spec, base_url=site, workdir=tmp_path, window_s=0.0)
    ctx.stop.set()
    state = page_loads(FrontendAgent().profile(ctx))
    assert state.height == 3 and (state.get_column("lcp_ms") > 0).all()
    rows = vital_goals([parse_expression("lcp_ms<=2500"), parse_expression("lcp_ms<=0.001")], state, None)
    assert rows["lcp_ms<=2500"]["met"] and not rows["lcp_ms<=0.001"]["met"]
    assert rows["lcp_ms<=2500"]["loads"] == 3
    assert not broken_vitals([parse_expression("lcp_ms<=1.1*baseline")], state, state)


def test_run_goals_take_vitals_from_the_current_page_loads() -> None:
    from types import SimpleNamespace

    from tasks.loop import goals_met

    stats = {"total": {"p95_ms": 40.0}, "endpoints": {}}
    request = SimpleNamespace(goals=[parse_expression("p95_ms<=50"), parse_expression("lcp_ms<=2500")])
    window = SimpleNamespace(stats=stats)
    run = SimpleNamespace(request=request, current=window, baseline=window, page_loads={})
    assert [g["met"] for g in goals_met(run)] == [True, False]  # type: ignore[arg-type]  # no loads: not met
    run.page_loads["current"] = loads(noisy(2000))
    rows = goals_met(run)  # type: ignore[arg-type]
    assert [g["met"] for g in rows] == [True, True] and rows[1]["loads"] == 8


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
def test_a_trial_loads_the_pages_and_reverts_only_past_the_threshold(site: str, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tasks.pages import broken_page_vitals

    spec = TargetSpec.model_validate({"name": "vitals", "base_url": site, "frontend": {"pages": ["/"], "loads": 3},
                                      "load": {"endpoints": [{"name": "home", "path": "/"}]}})
    handle = SimpleNamespace(base_url=site, pids=lambda: [])
    run = SimpleNamespace(spec=spec, request=SimpleNamespace(quality=[parse_expression("lcp_ms<=1.1*baseline")]),
                          rt=SimpleNamespace(handle=handle, workdir=tmp_path, database_url=None, config={}),
                          page_loads={"baseline": loads([60_000.0] * 3)})
    broken, measured = broken_page_vitals(run)  # type: ignore[arg-type]
    assert broken == [] and measured is not None and measured.height == 3  # far faster than a 60 s baseline
    fast_baseline = loads([0.5] * 3)
    assert broken_vitals(run.request.quality, measured, fast_baseline)  # slower than a 0.5 ms one: reverted
    run.page_loads = {}
    assert broken_page_vitals(run) == ([], None)  # type: ignore[arg-type]  # no baseline page loads: nothing judged
