"""Findings of the frontend agent from observations shaped like the agent's own."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.agents.compression import compression_knob
from tasks.agents.frontend.findings import (
    LARGE_PAGE_BYTES,
    find_page_issues,
    has_freshness,
)
from tasks.spec import TargetSpec


def resource(path: str, **over: Any) -> dict[str, Any]:
    rec = {"url": f"http://127.0.0.1:1{path}", "path": path, "type": "script", "status": 200,
           "transfer_bytes": 50_000, "encoded_bytes": 50_000, "decoded_bytes": 50_000,
           "content_encoding": None, "cache_control": None, "content_type": "text/javascript",
           "render_blocking": False, "render_blocking_status": "non-blocking", "start_ms": 1.0,
           "duration_ms": 5.0, "headers": {}, "gzip_bytes": 9_000}
    rec.update(over)
    return rec


def page(*resources: dict[str, Any], loads: int = 2) -> dict[str, Any]:
    total = sum(r["transfer_bytes"] for r in resources)
    load = {"transfer_bytes": total, "requests": len(resources), "resources": list(resources)}
    return {"loads": [load] * loads}


@pytest.mark.parametrize(("headers", "fresh"), [
    ({}, False),
    ({"cache-control": "public, max-age=3600"}, True),
    ({"cache-control": "s-maxage=60"}, False),  # shared caches only
    ({"cache-control": "s-maxage=60, max-age=30"}, True),
    ({"cache-control": "max-age=0"}, False),
    ({"cache-control": "no-cache, max-age=3600"}, False),
    ({"cache-control": "no-store"}, False),
    ({"expires": "Thu, 01 Dec 2094 16:00:00 GMT"}, True),
])
def test_freshness_follows_cache_control_then_expires(headers: dict[str, str], fresh: bool) -> None:
    assert has_freshness(headers) is fresh


def test_compression_knob_must_be_bool_and_not_already_on() -> None:
    spec = TargetSpec(name="t", base_url="http://127.0.0.1:1", load={"endpoints": [{"name": "a", "path": "/"}]},
                      knobs={"gzip_level": {"type": "int", "low": 1, "high": 9, "default": 6, "apply": {"env": "GZ"}},
                             "compress": {"type": "bool", "default": False,
                                          "apply": {"http": {"path": "/admin", "field": "compress"}}}})
    assert compression_knob(spec, {}) == "compress"
    assert compression_knob(spec, {"compress": True}) is None


def test_shared_resource_is_reported_once_naming_every_page() -> None:
    shared = resource("/static/app.js", render_blocking=True)
    observed = {"pages": {"/": page(shared), "/about": page(shared), "/broken": {"loads": [{"error": "timeout"}]}}}
    findings = find_page_issues(observed, knob=None)
    by_kind = {f.kind: f for f in findings}
    assert set(by_kind) == {"uncompressed_response", "no_cache_headers", "render_blocking"}
    assert all(f.evidence["pages"] == ["/", "/about"] and f.endpoint == "/" for f in findings)
    assert by_kind["uncompressed_response"].estimated_gain["bytes_saved"] == 41_000


def test_small_saving_compressed_or_dynamic_resources_are_not_findings() -> None:
    observed = {"pages": {"/": page(
        resource("/a.js", gzip_bytes=48_000, cache_control="max-age=60", headers={"cache-control": "max-age=60"}),
        resource("/b.js", content_encoding="br", headers={"expires": "Thu, 01 Dec 2094 16:00:00 GMT"}),
        resource("/api/items", type="fetch", content_type="application/json", content_encoding="gzip"),
        resource("/logo.png", type="image", content_type="image/png", headers={"cache-control": "max-age=600"}),
    )}}
    assert find_page_issues(observed, knob="gzip") == []


def test_heavy_page_is_a_page_level_large_payload() -> None:
    parts = [resource(f"/img/{i}.png", type="image", content_type="image/png", transfer_bytes=150_000,
                      headers={"cache-control": "max-age=600"}) for i in range(LARGE_PAGE_BYTES // 150_000 + 1)]
    findings = find_page_issues({"pages": {"/gallery": page(*parts)}}, knob=None)
    assert [(f.kind, f.location) for f in findings] == [("large_payload", "/gallery")]
    assert findings[0].evidence["page_transfer_bytes"] >= LARGE_PAGE_BYTES
