"""Findings of the frontend agent: turn its page-load observations into ranked findings.

Kinds: ``uncompressed_response`` (gzip saving measured on the real body), ``no_cache_headers``,
``render_blocking`` and ``large_payload``. Millisecond gains off loopback are estimates at
Lighthouse's mobile throughput and say so in ``estimated_gain['basis']``.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from tasks.agents.compression import COMPRESS_MIN_BYTES, COMPRESS_MIN_SAVING, COMPRESSIBLE
from tasks.findings import SEVERITY_RANK, Candidate, Finding, Severity

CACHEABLE_TYPES = {"script", "stylesheet", "image", "font", "media"}
LARGE_RESOURCE_BYTES = 200_000
LARGE_PAGE_BYTES = 1_600_000
SEVERITY_BYTES = (100_000, 10_000)  # high, medium
SEVERITY_MS = (1000.0, 300.0)  # high, medium (at the reference network)
REFERENCE_BYTES_PER_MS = 1_638_400 / 8 / 1000  # Lighthouse's mobile throughput, 1.6 Mbit/s
REFERENCE_NETWORK = "ms at 1.6 Mbit/s (Lighthouse mobile throttling), an estimate"
LIGHTHOUSE_AUDIT = {"uncompressed_response": "uses-text-compression",
                    "no_cache_headers": "uses-long-cache-ttl",
                    "render_blocking": "render-blocking-resources", "large_payload": "total-byte-weight"}


def find_page_issues(observed: dict[str, Any], knob: str | None) -> list[Finding]:
    """Findings for every page; a resource shared by pages is reported once, naming all pages."""
    found: dict[tuple[str, str], Finding] = {}
    lighthouse = (observed.get("lighthouse") or {}).get("pages") or {}

    def add(finding: Finding) -> None:
        audit = (lighthouse.get(finding.endpoint or "") or {}).get("audits", {}).get(LIGHTHOUSE_AUDIT[finding.kind])
        if audit:
            finding.evidence["lighthouse"] = audit
        key = (finding.kind, finding.location)
        if key in found:
            found[key].evidence["pages"].append(finding.endpoint)
        else:
            finding.evidence["pages"] = [finding.endpoint]
            found[key] = finding

    for path, page in observed["pages"].items():
        loads = [load for load in page.get("loads", []) if "error" not in load]
        if not loads:
            continue
        page_bytes = statistics.median(load["transfer_bytes"] for load in loads)
        for res in merge_resources(loads).values():
            for finding in resource_findings(res, path, page_bytes, knob, page.get("warm")):
                add(finding)
        if page_bytes >= LARGE_PAGE_BYTES:
            add(Finding("frontend", "large_payload", path, _severity_bytes(page_bytes / 4),
                        {"page_transfer_bytes": page_bytes, "requests": loads[0]["requests"]},
                        {"bytes": page_bytes, "ms": _reference_ms(page_bytes), "basis": REFERENCE_NETWORK},
                        endpoint=path))
    return sorted(found.values(), key=lambda f: -SEVERITY_RANK[f.severity])


def resource_findings(res: dict[str, Any], page: str, page_bytes: float, knob: str | None,
                      warm: dict[str, Any] | None) -> list[Finding]:
    """The findings one resource of one page deserves."""
    out: list[Finding] = []
    loc, size = res["path"], res["transfer_bytes"]
    base = {"status": res["status"], "headers": res["headers"], "transfer_bytes": size,
            "decoded_bytes": res["decoded_bytes"]}
    if needs_compression(res):
        gz = res.get("gzip_bytes")
        saved = res["decoded_bytes"] - gz if gz is not None else None
        if saved is None or saved >= COMPRESS_MIN_SAVING * res["decoded_bytes"]:
            candidate = None
            if knob is not None:
                candidate = Candidate(kind="set_knob", params={"knob": knob, "value": True},
                                      description=f"turn on response compression ({knob}=true)",
                                      risk="low", expected_gain=round(min(1.0, (saved or 0) / max(page_bytes, 1)), 3))
            out.append(Finding("frontend", "uncompressed_response", loc, _severity_bytes(saved or size),
                               {**base, "gzip_bytes": gz, "content_type": res["content_type"]},
                               {"bytes_saved": saved, "ms": _reference_ms(saved or 0), "basis": REFERENCE_NETWORK},
                               endpoint=page, candidate=candidate))
    if res["type"] in CACHEABLE_TYPES and res["status"] == 200 and not has_freshness(res["headers"]):
        evidence = dict(base)
        if warm and "error" not in warm:
            evidence["refetched_on_reload"] = loc in warm.get("refetched", [])
        out.append(Finding("frontend", "no_cache_headers", loc, _severity_bytes(size), evidence,
                           {"bytes_saved": size, "ms": _reference_ms(size), "basis": "per repeat view, " + REFERENCE_NETWORK},
                           endpoint=page))
    if res["render_blocking"]:
        ms_ref = _reference_ms(size)
        out.append(Finding("frontend", "render_blocking", loc, _severity_ms(ms_ref),
                           {**base, "type": res["type"], "fetch_ms": res["duration_ms"],
                            "fetch_ms_per_load": res["durations_ms"], "render_blocking_status": res["render_blocking_status"]},
                           {"ms": res["duration_ms"], "ms_at_reference": ms_ref, "basis": "measured fetch time; " + REFERENCE_NETWORK},
                           endpoint=page))
    if size >= LARGE_RESOURCE_BYTES:
        out.append(Finding("frontend", "large_payload", loc, _severity_bytes(size / 2), base,
                           {"bytes": size, "ms": _reference_ms(size), "basis": REFERENCE_NETWORK}, endpoint=page))
    return out


def merge_resources(loads: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per resource over the cold loads; fetch time is the median over loads."""
    merged: dict[str, dict[str, Any]] = {}
    for load in loads:
        for res in load["resources"]:
            rec = merged.setdefault(res["path"], {**res, "durations_ms": []})
            rec["durations_ms"].append(res["duration_ms"])
            if rec.get("gzip_bytes") is None and res.get("gzip_bytes") is not None:
                rec["gzip_bytes"] = res["gzip_bytes"]
    for rec in merged.values():
        durations = [d for d in rec["durations_ms"] if d is not None]
        rec["duration_ms"] = round_ms(statistics.median(durations)) if durations else None
    return merged


def has_freshness(headers: dict[str, str]) -> bool:
    """Whether a browser may reuse the response without asking the server (s-maxage is for CDNs)."""
    cache_control = headers.get("cache-control", "").lower()
    if "no-store" in cache_control or "no-cache" in cache_control:
        return False
    match = re.search(r"(?<![\w-])max-age\s*=\s*(\d+)", cache_control)
    if match:
        return int(match.group(1)) > 0
    return "expires" in headers


def needs_compression(res: dict[str, Any]) -> bool:
    """An uncompressed text response big enough for compression to matter."""
    encoding = (res.get("content_encoding") or "identity").lower()
    return (encoding == "identity" and res.get("status") == 200 and res["decoded_bytes"] >= COMPRESS_MIN_BYTES
            and bool(COMPRESSIBLE.search(res.get("content_type") or "")))


def _severity_bytes(n: float) -> Severity:
    return "high" if n >= SEVERITY_BYTES[0] else "medium" if n >= SEVERITY_BYTES[1] else "low"


def _severity_ms(ms: float) -> Severity:
    return "high" if ms >= SEVERITY_MS[0] else "medium" if ms >= SEVERITY_MS[1] else "low"


def _reference_ms(n_bytes: float) -> float:
    return round(n_bytes / REFERENCE_BYTES_PER_MS, 1)


def round_ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)

