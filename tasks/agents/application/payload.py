"""HTTP payloads the load test saw: large responses, and large responses sent uncompressed.

The window's samples give each endpoint's response bytes. For a large GET endpoint whose
path is known (``load.endpoints``, ``frontend.pages``, or a Locust name that is itself a
path) one request with ``Accept-Encoding: gzip`` shows whether the server compresses it; the
gzip saving is measured on the real body. A locustfile-only endpoint named otherwise gets a
bytes-only ``large_payload`` finding.
"""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import polars as pl

from tasks.agents.compression import (
    COMPRESS_MIN_BYTES,
    COMPRESS_MIN_SAVING,
    COMPRESSIBLE,
    compression_knob,
)
from tasks.findings import Candidate, Finding, Severity
from tasks.load.scenario import INT_PLACEHOLDER
from tasks.spec import TargetSpec

AGENT = "application"
LARGE_PAYLOAD_BYTES = 50_000  # mean response body at or above this: large
SEVERITY_BYTES = (500_000, 100_000)  # high, medium
PROBE_TIMEOUT_S = 5.0
PROBE_BUDGET_S = 10.0  # all payload probes together
MAX_PROBES = 10
TRANSFER_SHARE_OF_LATENCY = 0.25  # assumed part of a large response's latency spent sending it


def endpoint_paths(spec: TargetSpec) -> dict[str, str]:
    """Locust name -> a concrete GET path, for every endpoint whose path the spec tells."""
    out: dict[str, str] = {}
    for ep in spec.load.endpoints:
        if ep.method == "GET":
            out[ep.name] = INT_PLACEHOLDER.sub(lambda m: m.group(1), ep.path)
    for page in spec.frontend.pages if spec.frontend else []:
        out.setdefault(page, page)
    return out


def path_for(name: str, known: dict[str, str]) -> str | None:
    if name in known:
        return known[name]
    return name if name.startswith("/") and "{" not in name and " " not in name else None


def endpoint_sizes(samples: pl.DataFrame) -> pl.DataFrame:
    """Per endpoint and method: successful requests, mean and max response bytes."""
    ok = samples.filter(pl.col("error").is_null() & (pl.col("status") < 400))
    total = max(samples.height, 1)
    return (ok.group_by("endpoint", "method")
            .agg(pl.len().alias("requests"), pl.col("bytes").mean().alias("mean_bytes"),
                 pl.col("bytes").max().alias("max_bytes"))
            .with_columns((pl.col("requests") / total).alias("share_of_requests"))
            .sort("mean_bytes", descending=True))


def probe_payload(client: httpx.Client, path: str, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """One GET asking for gzip: status, encoding, wire bytes, body bytes and, if uncompressed, gzip's saving."""
    with client.stream("GET", path, headers={"Accept-Encoding": "gzip"}, timeout=timeout_s) as response:
        wire = b"".join(response.iter_raw())
    encoding = (response.headers.get("content-encoding") or "identity").lower()
    out: dict[str, Any] = {"path": path, "status": response.status_code, "content_encoding": encoding,
                           "content_type": response.headers.get("content-type"), "wire_bytes": len(wire)}
    if encoding == "identity":
        out["body_bytes"] = len(wire)
        out["gzip_bytes"] = len(gzip.compress(wire, compresslevel=6))
    return out


def find_payload_issues(spec: TargetSpec, config: dict[str, Any], base_url: str, samples: pl.DataFrame,
                        errors: list[dict[str, str]]) -> tuple[list[Finding], list[dict[str, Any]]]:
    """``large_payload`` and ``uncompressed_response`` findings, and the probes behind them."""
    if samples.height == 0:
        return [], []
    known = endpoint_paths(spec)
    knob = compression_knob(spec, config)
    found: list[Finding] = []
    probes: list[dict[str, Any]] = []
    deadline = time.monotonic() + PROBE_BUDGET_S
    with httpx.Client(base_url=base_url) as client:
        for row in endpoint_sizes(samples).iter_rows(named=True):
            if row["mean_bytes"] is None or row["mean_bytes"] < LARGE_PAYLOAD_BYTES:
                break
            path = path_for(row["endpoint"], known) if row["method"] == "GET" else None
            probe = None
            if path is not None and len(probes) < MAX_PROBES and time.monotonic() < deadline:
                try:
                    probe = probe_payload(client, path, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
                    probes.append({"endpoint": row["endpoint"], **probe})
                except httpx.HTTPError as exc:
                    errors.append({"probe": f"payload:{row['endpoint']}", "error": f"{type(exc).__name__}: {exc}"})
            found.append(large_payload(row, probe))
            if probe is not None:
                finding = uncompressed_response(row, probe, knob)
                if finding is not None:
                    found.append(finding)
    return found, probes


def large_payload(row: dict[str, Any], probe: dict[str, Any] | None) -> Finding:
    mean = float(row["mean_bytes"])
    evidence = {"mean_bytes": round(mean), "max_bytes": int(row["max_bytes"]), "requests": row["requests"],
                "share_of_requests": round(row["share_of_requests"], 3), "threshold_bytes": LARGE_PAYLOAD_BYTES,
                "basis": "response bytes seen by the load test", "probe": probe}
    return Finding(AGENT, "large_payload", row["endpoint"], _severity(mean), evidence,
                   {"bytes_per_request": round(mean)}, endpoint=row["endpoint"])


def uncompressed_response(row: dict[str, Any], probe: dict[str, Any], knob: str | None) -> Finding | None:
    """A compressible response the server sent as is although the client accepted gzip."""
    if (probe["content_encoding"] != "identity" or probe["status"] >= 400
            or probe["body_bytes"] < COMPRESS_MIN_BYTES or not COMPRESSIBLE.search(probe["content_type"] or "")):
        return None
    saved = probe["body_bytes"] - probe["gzip_bytes"]
    saved_share = saved / probe["body_bytes"]
    if saved_share < COMPRESS_MIN_SAVING:
        return None
    candidate = None
    if knob is not None:
        candidate = Candidate("set_knob", {"knob": knob, "value": True},
                              f"turn on response compression ({knob}=true)", risk="low",
                              expected_gain=round(saved_share * TRANSFER_SHARE_OF_LATENCY, 3),
                              endpoint=row["endpoint"])
    evidence = {"path": probe["path"], "content_type": probe["content_type"], "request_headers": {"Accept-Encoding": "gzip"},
                "content_encoding": None, "body_bytes": probe["body_bytes"], "gzip_bytes": probe["gzip_bytes"],
                "requests": row["requests"], "share_of_requests": round(row["share_of_requests"], 3)}
    return Finding(AGENT, "uncompressed_response", row["endpoint"], _severity(saved), evidence,
                   {"bytes_saved_per_request": saved, "share_saved": round(saved_share, 3),
                    "basis": "gzip level 6 on the real body"}, endpoint=row["endpoint"], candidate=candidate)


def _severity(n_bytes: float) -> Severity:
    return "high" if n_bytes >= SEVERITY_BYTES[0] else "medium" if n_bytes >= SEVERITY_BYTES[1] else "low"
