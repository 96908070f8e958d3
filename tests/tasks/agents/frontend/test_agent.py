"""The frontend agent against a real test site, loaded by the real system Chromium."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tasks.agents.base import Agent, AgentContext
from tasks.agents.frontend import agent as frontend
from tasks.agents.frontend.agent import SKIP_REASON, FrontendAgent, find_chromium
from tasks.agents.frontend.lighthouse import LIGHTHOUSE_ENV, find_lighthouse
from tasks.spec import TargetSpec

needs_chromium = pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)
BIG_JS = ("var filler = 'a slow and uncompressed script line that gzip shrinks well';\n" * 4000).encode()
CSS = ("h1 { color: #333; margin: 0 0 1em 0; font-family: sans-serif; }\n" * 80).encode()
BAD_PAGE = b"""<!doctype html><html><head><title>bad</title>
<link rel="stylesheet" href="/static/bad.css"><script src="/static/big.js"></script></head>
<body><h1>Bad page</h1><p>Render-blocking, uncompressed, uncached.</p>
<script>requestAnimationFrame(() => setTimeout(() => {
  const t = performance.now(); while (performance.now() - t < 150) {} }, 0));</script></body></html>"""
GOOD_PAGE = b"""<!doctype html><html><head><title>good</title><script defer src="/static/app.js"></script>
</head><body><h1>Good page</h1><p>Deferred, compressed, cached.</p></body></html>"""
CACHED = "public, max-age=31536000, immutable"


class SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    release: threading.Event  # set by the fixture: slow responses end

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        routes = {
            "/bad": (BAD_PAGE, "text/html", False, None),
            "/static/bad.css": (CSS, "text/css", False, None),
            "/static/big.js": (BIG_JS, "text/javascript", False, None),
            "/good": (GOOD_PAGE, "text/html", True, "no-cache"),
            "/static/app.js": (BIG_JS, "text/javascript", True, CACHED),
        }
        if self.path == "/slow-body":
            return self.send_slowly()
        if self.path not in routes:
            self.send_error(404)
            return
        body, content_type, compress, cache = routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if compress and "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if cache:
            self.send_header("Cache-Control", cache)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_slowly(self) -> None:
        """Headers at once, then a body that trickles for up to 30 s: a page that never loads in time."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"<html><body><h1>slow</h1>")
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and not self.release.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            pass  # the browser went away

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (SiteHandler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(autouse=True, scope="module")
def no_lighthouse() -> Iterator[None]:
    """Keep Lighthouse (~12 s a page) out of every test but its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LIGHTHOUSE_ENV, "off")
        yield


def make_context(base_url: str, pages: list[str], tmp: Path, *, loads: int = 2, window_s: float = 60,
                 knobs: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                 load_over: bool = True) -> AgentContext:
    """An agent context whose load window has (by default) already ended: the pages load at once."""
    spec = TargetSpec(name="site", base_url=base_url,
                      load={"endpoints": [{"name": "home", "path": "/"}], "warmup_s": 0},
                      frontend={"pages": pages, "loads": loads}, knobs=knobs or {})
    ctx = AgentContext(spec=spec, base_url=base_url, workdir=tmp, window_s=window_s, config=config or {})
    if load_over:
        ctx.stop.set()
    return ctx


@pytest.fixture(scope="module")
def observed(site: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if find_chromium() is None:
        pytest.skip(SKIP_REASON)
    ctx = make_context(site, ["/bad", "/good"], tmp_path_factory.mktemp("frontend"))
    return FrontendAgent().profile(ctx)


def by_path(load: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in load["resources"]}


def test_agent_follows_the_protocol_and_applies_only_with_pages(tmp_path: Path) -> None:
    agent = FrontendAgent()
    assert isinstance(agent, Agent) and (agent.name, agent.layer) == ("frontend", "frontend")
    assert agent.applies_to(make_context("http://127.0.0.1:1", ["/"], tmp_path).spec)
    assert not agent.applies_to(make_context("http://127.0.0.1:1", [], tmp_path).spec)


def test_missing_chromium_reports_skipped_with_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFAGENTS_CHROMIUM", str(tmp_path / "no-such-chromium"))
    agent = FrontendAgent()
    ctx = make_context("http://127.0.0.1:1", ["/"], tmp_path)
    observed = agent.profile(ctx)
    assert observed == {"skipped": "chromium not found: install it with `apt-get install -y chromium`"}
    assert agent.findings(ctx, observed, pl.DataFrame()) == []


@pytest.mark.chromium
@needs_chromium
def test_every_load_has_positive_metrics(observed: dict[str, Any]) -> None:
    json.dumps(observed)  # the store keeps observations as JSON
    for path, n_requests in (("/bad", 3), ("/good", 2)):
        loads = observed["pages"][path]["loads"]
        assert len(loads) == 2 and all("error" not in load for load in loads), loads
        for load in loads:
            for metric in ("ttfb_ms", "fcp_ms", "lcp_ms", "load_ms"):
                assert load[metric] > 0, (path, metric, load[metric])
            assert load["requests"] == n_requests
            assert load["decoded_bytes"] > len(BIG_JS)
            assert load["cls"] >= 0
    bad, good = observed["pages"]["/bad"]["loads"][0], observed["pages"]["/good"]["loads"][0]
    assert bad["long_tasks"] >= 1 and bad["tbt_ms"] > 0  # the 150 ms busy loop after first paint
    assert bad["transfer_bytes"] > len(BIG_JS)
    assert good["transfer_bytes"] < good["decoded_bytes"] / 5  # gzip on the wire
    assert observed["stopped_early"] is False
    assert "not installed" in observed["lighthouse"]["skipped"]


@pytest.mark.chromium
@needs_chromium
def test_resources_carry_sizes_headers_and_render_blocking(observed: dict[str, Any]) -> None:
    bad = by_path(observed["pages"]["/bad"]["loads"][0])
    good = by_path(observed["pages"]["/good"]["loads"][0])
    big, css, deferred = bad["/static/big.js"], bad["/static/bad.css"], good["/static/app.js"]
    assert (big["type"], big["status"], big["render_blocking"]) == ("script", 200, True)
    assert big["content_encoding"] is None and big["cache_control"] is None
    assert big["decoded_bytes"] == len(BIG_JS) and big["transfer_bytes"] >= len(BIG_JS)
    assert big["gzip_bytes"] < len(BIG_JS) / 5  # measured on the real body
    assert css["render_blocking"] and css["type"] == "stylesheet"
    assert not deferred["render_blocking"] and deferred["content_encoding"] == "gzip"
    assert deferred["cache_control"] == CACHED and deferred["headers"]["cache-control"] == CACHED
    assert deferred["encoded_bytes"] < deferred["decoded_bytes"] / 5
    assert not bad["/bad"]["render_blocking"] and bad["/bad"]["type"] == "document"
    assert "/static/app.js" in observed["pages"]["/good"]["warm"]["cached"]


@pytest.mark.chromium
@needs_chromium
def test_findings_name_the_bad_resources_and_spare_the_good_page(observed: dict[str, Any], tmp_path: Path) -> None:
    ctx = make_context("http://127.0.0.1:1", ["/bad", "/good"], tmp_path)
    findings = FrontendAgent().findings(ctx, observed, pl.DataFrame())
    found = {(f.kind, f.location) for f in findings}
    assert {("uncompressed_response", "/static/big.js"), ("uncompressed_response", "/static/bad.css"),
            ("no_cache_headers", "/static/big.js"), ("no_cache_headers", "/static/bad.css"),
            ("render_blocking", "/static/big.js"), ("render_blocking", "/static/bad.css"),
            ("large_payload", "/static/big.js")} <= found
    assert all(f.endpoint == "/bad" and f.agent == "frontend" for f in findings), found
    assert not any("/good" in f.evidence["pages"] for f in findings)
    big = next(f for f in findings if (f.kind, f.location) == ("uncompressed_response", "/static/big.js"))
    assert big.severity == "high" and big.candidate is None  # no compression knob in this spec
    assert big.estimated_gain["bytes_saved"] > 0.8 * len(BIG_JS) and big.estimated_gain["ms"] > 0
    assert big.evidence["headers"]["content-length"] == str(len(BIG_JS))
    json.dumps([f.to_dict() for f in findings])


@pytest.mark.chromium
@needs_chromium
@pytest.mark.parametrize("knobs", [
    {"gzip": {"type": "bool", "default": False, "apply": {"env": "SHOP_GZIP"}}},
    {"encoding": {"type": "bool", "default": False, "apply": {"env": "APP_COMPRESS_RESPONSES"}}},
])
def test_compression_knob_becomes_the_candidate(observed: dict[str, Any], tmp_path: Path, knobs: dict[str, Any]) -> None:
    ctx = make_context("http://127.0.0.1:1", ["/bad", "/good"], tmp_path, knobs=knobs)
    findings = FrontendAgent().findings(ctx, observed, pl.DataFrame())
    (name,) = knobs
    uncompressed = [f for f in findings if f.kind == "uncompressed_response"]
    assert uncompressed and all(f.candidate is not None for f in uncompressed)
    candidate = uncompressed[0].candidate
    assert (candidate.kind, candidate.params, candidate.risk) == ("set_knob", {"knob": name, "value": True}, "low")
    assert 0 < candidate.expected_gain <= 1
    assert all(f.candidate is None for f in findings if f.kind != "uncompressed_response")
    already_on = make_context("http://127.0.0.1:1", ["/bad"], tmp_path, knobs=knobs, config={name: True})
    assert all(f.candidate is None for f in FrontendAgent().findings(already_on, observed, pl.DataFrame()))


@pytest.mark.chromium
@needs_chromium
def test_pages_load_only_after_the_load_stops(site: str, tmp_path: Path) -> None:
    ctx = make_context(site, ["/good"], tmp_path, loads=1, window_s=120, load_over=False)
    timer = threading.Timer(1.5, ctx.stop.set)
    timer.start()
    started = time.monotonic()
    try:
        observed = FrontendAgent().profile(ctx)
    finally:
        timer.cancel()
    assert observed["waited_for_load_s"] >= 1.4  # Chromium started only when the load ended
    assert time.monotonic() - started < 1.5 + frontend.PAGES_BUDGET_S + frontend.STOP_GRACE_S
    (load,) = observed["pages"]["/good"]["loads"]
    assert "error" not in load and load["fcp_ms"] > 0


@pytest.mark.chromium
@needs_chromium
def test_page_loads_end_within_their_budget(site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontend, "PAGES_BUDGET_S", 4.0)
    ctx = make_context(site, ["/slow-body", "/good"], tmp_path, loads=5)
    started = time.monotonic()
    observed = FrontendAgent().profile(ctx)
    assert time.monotonic() - started < 4.0 + frontend.STOP_GRACE_S + 3  # the page alone takes 30 s
    slow = observed["pages"]["/slow-body"]["loads"]
    assert slow and "did not finish loading" in slow[0]["error"]
    assert observed["stopped_early"] is True
    assert len(observed["pages"]["/good"]["loads"]) < 5


@pytest.mark.chromium
@needs_chromium
def test_profile_works_when_called_inside_an_asyncio_loop(site: str, tmp_path: Path) -> None:
    ctx = make_context(site, ["/good"], tmp_path, loads=1)

    async def call_from_loop() -> dict[str, Any]:
        return FrontendAgent().profile(ctx)

    observed = asyncio.run(call_from_loop())
    (load,) = observed["pages"]["/good"]["loads"]
    assert "error" not in load and load["fcp_ms"] > 0


@pytest.mark.chromium
@needs_chromium
def test_lighthouse_audits_join_the_observations(site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIGHTHOUSE_ENV)
    if os.environ.get("PERFAGENTS_TEST_LIGHTHOUSE"):
        monkeypatch.setenv(LIGHTHOUSE_ENV, os.environ["PERFAGENTS_TEST_LIGHTHOUSE"])
    if find_lighthouse([Path.cwd()]) is None:
        pytest.skip("lighthouse not installed (optional: `npm install lighthouse`)")
    ctx = make_context(site, ["/bad"], tmp_path, loads=1, window_s=120)
    observed = FrontendAgent().profile(ctx)
    report = observed["lighthouse"]["pages"]["/bad"]
    assert 0 <= report["score"] <= 1 and report["metrics"]["first-contentful-paint"] > 0
    assert "uses-text-compression" in report["audits"]
    findings = FrontendAgent().findings(ctx, observed, pl.DataFrame())
    uncompressed = next(f for f in findings if f.kind == "uncompressed_response")
    assert uncompressed.evidence["lighthouse"]["score"] < 0.9
