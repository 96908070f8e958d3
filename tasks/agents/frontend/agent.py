"""The frontend agent: load each ``frontend.pages`` URL in headless Chromium, report what slows it.

The page loads run once the window's load has stopped, on the idle target, within
``PAGES_BUDGET_S``: Chromium takes half a core to a core on this 2-core machine, and during the
load it competed with the target it profiles (all agents together cost 14.6% of throughput and
p95 x3.6 with Chromium present, issue 14). What it reports (compression, cache headers,
render-blocking resources, payload sizes, paint timing of one user) does not need the load.

``profile`` loads every page ``frontend.loads`` times, each in a fresh browser context (a cold
cache), plus one warm reload, and records navigation/paint timing, LCP, CLS, long tasks (TBT)
and every resource's sizes, encoding, cache headers and render-blocking status. Lighthouse's
performance audits are added when a ``lighthouse`` binary is found. ``findings`` turns that into
``uncompressed_response``, ``no_cache_headers``, ``render_blocking`` and ``large_payload``.
Without Chromium the agent reports itself skipped with the command that installs it.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from tasks.agents.base import AgentContext
from tasks.agents.compression import compression_knob
from tasks.agents.frontend.findings import (
    find_page_issues,
    needs_compression,
    round_ms,
)
from tasks.agents.frontend.lighthouse import run_lighthouse_pages
from tasks.errors import PerfagentsError
from tasks.findings import Finding
from tasks.spec import TargetSpec

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ENV = "PERFAGENTS_CHROMIUM"  # another Chromium binary
CHROMIUM_INSTALL = "apt-get install -y chromium"
SKIP_REASON = f"chromium not found: install it with `{CHROMIUM_INSTALL}`"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
LAUNCH_TIMEOUT_S = 20.0
PAGE_TIMEOUT_S = 10.0  # one page load, navigation to settled metrics
STOP_GRACE_S = 3.0  # how long a load may go on after ctx.stop / the window's end
MIN_LOAD_S = 0.5  # do not start a load with less time than this left
LOAD_POLL_MS = 250  # how often a loading page checks ctx.stop
SETTLE_MS = 1000  # after 'load', wait at most this long for FCP and LCP
PAGES_BUDGET_S = 25.0  # page loads after the load stops, browser launch included (< window.AGENT_GRACE_S)
WARM_LOAD = True  # one reload in the last cold context, to see what the cache keeps
LONG_TASK_MS = 50.0  # the blocking part of a long task is what exceeds this (TBT)
BODY_SAMPLE_LIMIT = 20  # uncompressed text responses gzipped per page to measure the saving
HEADER_EXCERPT = ("content-type", "content-length", "content-encoding", "cache-control",
                  "expires", "etag", "last-modified", "vary")

INIT_JS = """(() => {
  const s = window.__perfagents = {lcp: null, cls: 0, longTasks: [], observers: []};
  try { performance.setResourceTimingBufferSize(2000); } catch (e) {}
  const watch = (type, fn) => { try {
    const o = new PerformanceObserver(l => l.getEntries().forEach(fn));
    o.observe({type, buffered: true});
    s.observers.push([o, fn]);
  } catch (e) {} };
  watch('largest-contentful-paint', e => { s.lcp = e.startTime; });
  watch('layout-shift', e => { if (!e.hadRecentInput) s.cls += e.value; });
  watch('longtask', e => { s.longTasks.push([e.startTime, e.duration]); });
})();"""
SETTLED_JS = """() => performance.getEntriesByName('first-contentful-paint').length > 0
  && window.__perfagents && window.__perfagents.lcp !== null"""
COLLECT_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const s = window.__perfagents || {lcp: null, cls: 0, longTasks: [], observers: []};
  for (const [o, fn] of s.observers) o.takeRecords().forEach(fn);  // entries not yet delivered
  const blocking = [];
  for (const el of document.querySelectorAll('head link[rel~="stylesheet"]'))
    if (!el.disabled && (!el.media || matchMedia(el.media).matches)) blocking.push(el.href);
  for (const el of document.querySelectorAll('head script[src]'))
    if (!el.async && !el.defer && el.type !== 'module') blocking.push(el.src);
  return {nav: nav ? nav.toJSON() : null, fcp: fcp ? fcp.startTime : null, lcp: s.lcp, cls: s.cls,
          longTasks: s.longTasks, blocking,
          resources: performance.getEntriesByType('resource').map(e => e.toJSON())};
}"""


class _LoadTimeout(Exception):
    """A page did not finish loading within its bound."""


class _Bounds:
    """The agent's time bound: the window (plus grace) or ``ctx.stop`` (plus grace)."""

    def __init__(self, stop: threading.Event, seconds: float) -> None:
        self.stop = stop
        self.deadline = time.monotonic() + seconds
        self._stopped_at: float | None = None

    def remaining(self) -> float:
        if self.stop.is_set() and self._stopped_at is None:
            self._stopped_at = time.monotonic()
        end = self.deadline if self._stopped_at is None else min(self.deadline, self._stopped_at + STOP_GRACE_S)
        return end - time.monotonic()

    def may_start(self, needed_s: float = MIN_LOAD_S) -> bool:
        return not self.stop.is_set() and self.remaining() > needed_s


class FrontendAgent:
    """Page loads in headless Chromium (Playwright driving the system browser)."""

    name = "frontend"
    layer = "frontend"

    def applies_to(self, spec: TargetSpec) -> bool:
        return bool(spec.frontend and spec.frontend.pages)

    def profile(self, ctx: AgentContext) -> dict[str, Any]:
        chromium = find_chromium()
        if chromium is None:
            return {"skipped": SKIP_REASON}
        waited = time.monotonic()
        ctx.stop.wait(ctx.window_s)  # the load's window: nothing of ours competes with the target
        observed = load_pages_now(ctx, chromium)
        observed["waited_for_load_s"] = round(time.monotonic() - waited - observed["elapsed_s"], 3)
        return observed

    def findings(self, ctx: AgentContext, observed: dict[str, Any], samples: pl.DataFrame) -> list[Finding]:
        if observed.get("skipped") or not observed.get("pages"):
            return []
        return find_page_issues(observed, compression_knob(ctx.spec, ctx.config))


def find_chromium() -> str | None:
    """The Chromium binary to drive, or None when it is not installed."""
    path = os.environ.get(CHROMIUM_ENV) or CHROMIUM_PATH
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def load_pages_now(ctx: AgentContext, chromium: str, *, lighthouse: bool = True) -> dict[str, Any]:
    """``measure_pages`` within PAGES_BUDGET_S from now (in a thread of its own under an asyncio
    loop). The loop's trials pass ``lighthouse=False``: they need the page loads' vitals only."""
    after = replace(ctx, stop=threading.Event(), window_s=PAGES_BUDGET_S)
    if not _event_loop_running():
        return measure_pages(after, chromium, lighthouse=lighthouse)
    # Playwright's sync API refuses to run inside an asyncio loop: give it its own thread
    bound_s = PAGES_BUDGET_S + STOP_GRACE_S + LAUNCH_TIMEOUT_S + PAGE_TIMEOUT_S + 120
    return call_in_thread(lambda: measure_pages(after, chromium, lighthouse=lighthouse), bound_s)


def measure_pages(ctx: AgentContext, chromium: str, *, lighthouse: bool = True) -> dict[str, Any]:
    """Load every page ``loads`` times within ``ctx.window_s`` (or until ``ctx.stop``); raw
    observations, JSON-serialisable."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    bounds = _Bounds(ctx.stop, ctx.window_s + STOP_GRACE_S)
    spec = ctx.spec.frontend
    paths = list(dict.fromkeys(spec.pages)) if spec else []
    loads = spec.loads if spec else 1
    pages: dict[str, dict[str, Any]] = {p: {"url": page_url(ctx.base_url, p), "loads": []} for p in paths}
    observed: dict[str, Any] = {"chromium": chromium, "pages": pages, "stopped_early": False}
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                         timeout=LAUNCH_TIMEOUT_S * 1000)
        except PlaywrightError as exc:
            raise PerfagentsError(f"chromium at {chromium} did not start: {_first_line(exc)}") from exc
        try:
            observed["browser_version"] = browser.version
            for round_no in range(loads):
                for path in paths:
                    if not bounds.may_start():
                        observed["stopped_early"] = True
                        break
                    context = browser.new_context()
                    try:
                        page = pages[path]
                        cold = measure_load(context, page["url"], bounds, gzip_bodies=round_no == 0)
                        page["loads"].append(cold)
                        if WARM_LOAD and round_no == loads - 1 and "error" not in cold and bounds.may_start():
                            page["warm"] = summarise_warm(measure_load(context, page["url"], bounds))
                    finally:
                        context.close()
                if observed["stopped_early"]:
                    break
        finally:
            browser.close()
    if lighthouse:
        observed["lighthouse"] = run_lighthouse_pages(
            {p: pages[p]["url"] for p in paths}, chromium, CHROMIUM_ARGS, bounds.remaining,
            search_dirs=[Path.cwd(), ctx.spec.spec_dir], stopped=ctx.stop.is_set)
    observed["elapsed_s"] = round(time.monotonic() - started, 3)
    return observed


def measure_load(context: Any, url: str, bounds: _Bounds, *, gzip_bodies: bool = False) -> dict[str, Any]:
    """One page load in ``context``; a load that fails or overruns is recorded with its error."""
    from playwright.sync_api import Error as PlaywrightError

    started = time.monotonic()
    page = context.new_page()
    responses: dict[str, Any] = {}
    page.on("response", lambda r: responses.setdefault(r.url, r))
    page.add_init_script(INIT_JS)
    record: dict[str, Any] = {"url": url}
    timeout_s = max(0.1, min(PAGE_TIMEOUT_S, bounds.remaining()))
    try:
        page.set_default_timeout(timeout_s * 1000)
        page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
        wait_until_loaded(page, started + timeout_s, bounds)
        try:
            page.wait_for_function(SETTLED_JS, timeout=SETTLE_MS)
        except PlaywrightError:
            pass  # a page without contentful paint: report what there is
        record.update(summarise_load(page.evaluate(COLLECT_JS), responses, url))
        if gzip_bodies:
            measure_gzip_savings(record["resources"], responses)
    except (PlaywrightError, _LoadTimeout) as exc:
        record["error"] = _first_line(exc)
    finally:
        page.close()
    record["elapsed_s"] = round(time.monotonic() - started, 3)
    return record


def wait_until_loaded(page: Any, deadline: float, bounds: _Bounds) -> None:
    """Wait for the 'load' event in short slices so a stop request is noticed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    while True:
        try:
            page.wait_for_load_state("load", timeout=LOAD_POLL_MS)
            return
        except PlaywrightTimeout:
            if time.monotonic() >= deadline or bounds.remaining() <= 0:
                raise _LoadTimeout(f"page did not finish loading within its {PAGE_TIMEOUT_S:.0f} s bound "
                                   "or the window's end") from None


def summarise_load(raw: dict[str, Any], responses: dict[str, Any], url: str) -> dict[str, Any]:
    """Metrics of one load from the in-page collection and the responses Playwright saw."""
    nav = raw.get("nav") or {}
    fcp = raw.get("fcp")
    tasks = raw.get("longTasks") or []
    blocking = set(raw.get("blocking") or [])
    entries = ([{**nav, "name": url}] if nav else []) + [
        e for e in raw.get("resources") or [] if not _browser_initiated(e)]
    resources = [resource_record(e, responses.get(e["name"]), blocking, url) for e in entries]
    return {
        "ttfb_ms": round_ms(nav.get("responseStart")),
        "fcp_ms": round_ms(fcp),
        "lcp_ms": round_ms(raw.get("lcp")),
        "cls": round(float(raw.get("cls") or 0.0), 4),
        "tbt_ms": round_ms(sum(max(0.0, d - LONG_TASK_MS) for s, d in tasks if fcp is None or s + d > fcp)),
        "long_tasks": len(tasks),
        "long_task_ms": [round_ms(d) for _, d in tasks],
        "load_ms": round_ms(nav.get("loadEventEnd") or nav.get("duration")),
        "requests": len(resources),
        "transfer_bytes": sum(r["transfer_bytes"] for r in resources),
        "decoded_bytes": sum(r["decoded_bytes"] for r in resources),
        "resources": resources,
    }


def resource_record(entry: dict[str, Any], response: Any, blocking_dom: set[str], page: str) -> dict[str, Any]:
    """One resource: timing-API sizes joined with the response's status and headers."""
    headers = dict(response.headers) if response is not None else {}
    is_document = entry.get("entryType") == "navigation"
    status = response.status if response is not None else entry.get("responseStatus")
    if response is not None:
        kind = response.request.resource_type
    else:
        kind = "document" if is_document else entry.get("initiatorType", "other")
    rbs = entry.get("renderBlockingStatus") or None
    encoded = int(entry.get("encodedBodySize") or 0) or int(headers.get("content-length") or 0)
    return {
        "url": entry["name"],
        "path": resource_location(entry["name"], page),
        "type": kind,
        "status": status,
        "transfer_bytes": int(entry.get("transferSize") or 0),
        "encoded_bytes": encoded,
        "decoded_bytes": int(entry.get("decodedBodySize") or 0) or encoded,
        "content_encoding": headers.get("content-encoding") or entry.get("contentEncoding") or None,
        "cache_control": headers.get("cache-control"),
        "content_type": headers.get("content-type") or entry.get("contentType") or None,
        "render_blocking": not is_document and (rbs == "blocking" if rbs else entry["name"] in blocking_dom),
        "render_blocking_status": rbs,
        "start_ms": round_ms(entry.get("startTime")),
        "duration_ms": round_ms(entry.get("duration")),
        "headers": {k: headers[k] for k in HEADER_EXCERPT if k in headers},
    }


def measure_gzip_savings(resources: list[dict[str, Any]], responses: dict[str, Any]) -> None:
    """Gzip (level 6) the bodies of uncompressed text responses: the saving is measured, not guessed."""
    for res in [r for r in resources if needs_compression(r)][:BODY_SAMPLE_LIMIT]:
        response = responses.get(res["url"])
        if response is None:
            continue
        try:
            res["gzip_bytes"] = len(gzip.compress(response.body(), compresslevel=6))
        except Exception:  # noqa: BLE001 - a body Chromium no longer holds: no measurement
            res["gzip_bytes"] = None


def summarise_warm(load: dict[str, Any]) -> dict[str, Any]:
    """What a reload in the same context fetched again versus took from the cache."""
    if "error" in load:
        return {"error": load["error"]}
    subresources = [r for r in load["resources"] if r["type"] != "document"]
    return {"requests": load["requests"], "transfer_bytes": load["transfer_bytes"],
            "refetched": [r["path"] for r in subresources if r["transfer_bytes"] > 0],
            "cached": [r["path"] for r in subresources if r["transfer_bytes"] == 0]}


def page_url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def resource_location(url: str, page: str) -> str:
    """A same-origin resource by its path (and query); another origin's by its full URL."""
    parts, origin = urlsplit(url), urlsplit(page)
    if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
        return url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def call_in_thread(fn: Callable[[], dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    """Run ``fn`` in a new thread (no asyncio loop there), re-raising what it raised."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="frontend-agent", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"frontend agent did not finish within {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def _browser_initiated(entry: dict[str, Any]) -> bool:
    """Chromium's own favicon fetch: not a resource the page asked for."""
    return entry.get("initiatorType") in ("other", "") and urlsplit(entry["name"]).path == "/favicon.ico"


def _event_loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
