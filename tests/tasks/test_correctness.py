"""responses==baseline against a real tiny app (starlette under uvicorn) with cache knobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tasks.correctness import (
    CorrectnessSpec,
    Probe,
    Response,
    ResponseCheck,
    capture_responses,
    compare_responses,
    normalize_body,
    sample_get_paths,
    stable_paths,
)
from tasks.spec import TargetSpec
from tasks.target.process import free_port

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0

# Knobs (env): APP_CACHE_TTL_S caches item and list GETs without invalidation (stale after a
# write); APP_CACHE_INVALIDATE=1 drops the cache on writes (correct); APP_CACHE_IGNORES_QUERY=1
# keys the cache by path only (wrong data for ?page=2); APP_GZIP=1 compresses responses.
APP = '''
import itertools, os, time, uuid
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

TTL = float(os.environ.get("APP_CACHE_TTL_S", "0"))
INVALIDATE = os.environ.get("APP_CACHE_INVALIDATE") == "1"
IGNORES_QUERY = os.environ.get("APP_CACHE_IGNORES_QUERY") == "1"
ITEMS = {i: {"id": i, "name": f"item {i}", "price": 10 * i} for i in range(1, 21)}
CACHE = {}
VISITS = itertools.count()


def cached(handler):
    async def wrapper(request):
        key = request.url.path if IGNORES_QUERY else str(request.url)
        hit = CACHE.get(key)
        if TTL > 0 and hit is not None and time.monotonic() - hit[0] < TTL:
            return JSONResponse(hit[1])
        status, body = handler(request)
        if TTL > 0 and status == 200:
            CACHE[key] = (time.monotonic(), body)
        return JSONResponse(body, status_code=status)
    return wrapper


def volatile(body):
    return {**body, "generated_at": time.time(), "request_id": uuid.uuid4().hex, "meta": {"now": time.time()}}


@cached
def get_item(request):
    item = ITEMS.get(int(request.path_params["item_id"]))
    return (404, {"error": "not found"}) if item is None else (200, volatile(item))


@cached
def list_items(request):
    page = int(request.query_params.get("page", "1"))
    ids = sorted(ITEMS)[(page - 1) * 5 : page * 5]
    return 200, volatile({"page": page, "items": [ITEMS[i] for i in ids]})


async def put_item(request):
    data = await request.json()
    ITEMS[int(request.path_params["item_id"])].update(data)
    if INVALIDATE:
        CACHE.clear()
    return JSONResponse(ITEMS[int(request.path_params["item_id"])])


async def home(request):
    return HTMLResponse("<html><body><h1>tiny shop</h1>" + "<p>item</p>" * 50 + "</body></html>")


async def visits(request):
    return JSONResponse({"visits": next(VISITS)})


async def health(request):
    return JSONResponse({"status": "ok", "pid": os.getpid()})


middleware = [Middleware(GZipMiddleware, minimum_size=10)] if os.environ.get("APP_GZIP") == "1" else []
app = Starlette(routes=[
    Route("/", home), Route("/health", health), Route("/visits", visits),
    Route("/items", list_items), Route("/items/{item_id:int}", get_item),
    Route("/items/{item_id:int}", put_item, methods=["PUT"]),
], middleware=middleware)
'''

PATHS = ["/", "/health", "/items?page=1", "/items?page=2", "/items/3", "/items/7"]
# item 13 is on no compared path, so the probe's writes move nothing else
PROBES = [Probe.model_validate({"write": {"method": "PUT", "path": "/items/13", "json": {"price": "{nonce}"}},
                                "read": "/items/13"})]


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start the tiny app with some env knobs on a free port; every one is stopped at the end."""
    (tmp_path / "tinyshop.py").write_text(APP)
    procs: list[subprocess.Popen[bytes]] = []

    def start(**knobs: str) -> str:
        port = free_port()
        env = {**os.environ, **knobs}
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tinyshop:app", "--app-dir", str(tmp_path), "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).is_success:
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"tiny app not ready on port {port}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def baseline_check(url: str) -> ResponseCheck:
    check = ResponseCheck(PATHS, PROBES)
    check.capture_baseline(url)
    check.capture_baseline(url)
    return check


def test_correct_app_passes_and_volatile_fields_are_ignored(start_app: Callable[..., str]) -> None:
    baseline_url = start_app()
    check = baseline_check(baseline_url)
    assert check.unstable == []  # generated_at, request_id, meta.now and pid vary but are ignored
    assert check.check(start_app()) == []  # a fresh instance of the same configuration
    # the bodies do differ byte for byte: only the normalization makes them equal
    first, second = httpx.get(f"{baseline_url}/items/7"), httpx.get(f"{baseline_url}/items/7")
    assert first.content != second.content


def test_stale_cache_is_flagged_by_the_write_then_read_probe(start_app: Callable[..., str]) -> None:
    check = baseline_check(start_app())
    assert check.baseline_probes[0].changed  # the baseline shows the write
    problems = check.check(start_app(APP_CACHE_TTL_S="60"))
    assert len(problems) == 1
    assert "probe /items/13" in problems[0] and "stale" in problems[0]


def test_cache_that_invalidates_on_write_passes(start_app: Callable[..., str]) -> None:
    check = baseline_check(start_app())
    assert check.check(start_app(APP_CACHE_TTL_S="60", APP_CACHE_INVALIDATE="1")) == []


def test_cache_serving_wrong_data_is_flagged(start_app: Callable[..., str]) -> None:
    check = baseline_check(start_app())
    problems = check.check(start_app(APP_CACHE_TTL_S="60", APP_CACHE_IGNORES_QUERY="1"))
    assert any(p.startswith("/items?page=2:") and "body differs" in p for p in problems)
    assert not any(p.startswith("/items?page=1:") for p in problems)  # the first page cached is right


def test_gzip_does_not_change_the_compared_bodies(start_app: Callable[..., str]) -> None:
    plain, zipped = start_app(), start_app(APP_GZIP="1")
    assert httpx.get(f"{zipped}/", headers={"accept-encoding": "gzip"}).headers.get("content-encoding") == "gzip"
    assert compare_responses(capture_responses(plain, PATHS), capture_responses(zipped, PATHS)) == []


def test_paths_that_move_by_themselves_are_set_aside(start_app: Callable[..., str]) -> None:
    url = start_app()
    # the probe's write changes page 3 too: also set aside, not reported as a difference
    probe = Probe.model_validate({"write": {"method": "PUT", "path": "/items/12", "json": {"price": "{nonce}"}},
                                  "read": "/items/12"})
    check = ResponseCheck([*PATHS, "/visits", "/items?page=3"], [probe])
    check.capture_baseline(url)
    check.capture_baseline(url)
    assert check.unstable == ["/items?page=3", "/visits"]
    assert check.check(url) == []


def test_compare_responses_reports_status_and_missing_paths() -> None:
    ok = normalize_body(b'{"a": 1}', "application/json")
    before = {"/x": Response(200, *ok, 8)}
    assert compare_responses(before, {"/x": Response(500, *ok, 8)}) == ["/x: status 500, baseline 200"]
    assert compare_responses(before, {}) == ["/x: not captured after the change"]
    assert compare_responses(before, {"/x": Response(200, *ok, 99)}) == []  # raw size alone is no difference
    baseline, unstable = stable_paths(before, {"/x": Response(200, "json", "other", 8)})
    assert baseline == {} and unstable == ["/x"]


def test_normalize_body_ignores_volatile_and_configured_keys_only() -> None:
    a = normalize_body(b'{"id": 1, "price": 5, "generated_at": 1.0, "x": {"now": 1}}', "application/json")
    b = normalize_body(b'{"x": {"now": 2}, "generated_at": 2.0, "price": 5, "id": 1}', "application/json")
    c = normalize_body(b'{"id": 1, "price": 6, "generated_at": 1.0, "x": {"now": 1}}', "application/json")
    assert a == b and a != c and a[0] == "json"
    d = normalize_body(b'{"id": 1, "version": "abc"}', "application/json; charset=utf-8", ["version"])
    e = normalize_body(b'{"id": 1, "version": "xyz"}', "application/json", ["version"])
    assert d == e
    assert normalize_body(b"<p>1</p>", "text/html")[0] == "text"
    assert normalize_body(b"<p>1</p>", "text/html") != normalize_body(b"<p>2</p>", "text/html")


def test_sample_get_paths_draws_placeholders_from_a_fixed_seed() -> None:
    spec = TargetSpec.model_validate({
        "name": "t", "base_url": "http://127.0.0.1:{port}", "frontend": {"pages": ["/", "/about"]},
        "load": {"endpoints": [
            {"name": "item", "path": "/items/{int:1:1000}"},
            {"name": "list", "path": "/items?page=1"},
            {"name": "buy", "path": "/buy", "method": "POST"},
        ]},
    })
    correctness = CorrectnessSpec.model_validate({"paths": ["/special"], "probes": [
        {"write": {"method": "PUT", "path": "/items/1", "json": {"price": "{nonce}"}}, "read": "/items/1"}]})
    paths = sample_get_paths(spec, correctness=correctness)
    assert paths == sample_get_paths(spec, correctness=correctness)  # deterministic
    assert paths[:3] == ["/special", "/", "/about"]
    items = [p for p in paths if p.startswith("/items/")]
    assert 1 <= len(items) <= 3 and all(1 <= int(p.rsplit("/", 1)[1]) <= 1000 for p in items)
    assert "/items?page=1" in paths and "/buy" not in paths
    assert sample_get_paths(spec, seed=1) != sample_get_paths(spec, seed=0) or len(items) == 1
    assert ResponseCheck.from_spec(spec, correctness).paths.count("/items/1") == 0  # probe reads apart
