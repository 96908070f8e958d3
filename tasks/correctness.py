"""Response correctness (``responses==baseline``): a change must not alter what the target answers.

Two checks, both over real HTTP on the target:

- **responses**: a fixed sample of GET paths is captured once on the baseline and again
  after a change; every status and normalized body must match. JSON bodies are compared
  after a canonical dump (sorted keys) with volatile keys dropped (``VOLATILE_KEYS`` plus
  the spec's ``ignore_keys``: timestamps, request ids, pids); other bodies by their hash.
  Paths whose answer changes between two baseline captures (the load's own writes, say)
  are set aside as unstable instead of being compared (``stable_paths``).
- **probes** (write-then-read): a stale cache only shows after data changes. A probe reads
  a path, sends a write, and reads the path again; where the baseline's read changed after
  the write, the changed configuration's must change too, else it serves stale data.
  A ``{nonce}`` in the write's JSON becomes a fresh number each time, so every write changes
  something.

The spec field proposed for TargetSpec is ``correctness: CorrectnessSpec`` (below).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from tasks.errors import InputError, TargetUnreachableError

VOLATILE_KEYS = frozenset({"generated_at", "now", "timestamp", "server_time", "request_id", "trace_id",
                           "pid", "uptime_s"})
TIMEOUT_S = 10.0
PATHS_PER_ENDPOINT = 3  # drawn instances of a path with {int:a:b} placeholders
PATH_SEED = 0
MAX_PATHS = 50
NONCE = "{nonce}"
_INT_PLACEHOLDER = re.compile(r"\{int:(-?\d+):(-?\d+)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteRequest(_Model):
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str
    json_body: Any = Field(default=None, alias="json")


class Probe(_Model):
    write: WriteRequest
    read: str  # a GET path whose answer the write changes


class CorrectnessSpec(_Model):
    """Proposed ``correctness:`` key of the target spec."""

    paths: list[str] = Field(default_factory=list)  # GET paths compared with the baseline
    probes: list[Probe] = Field(default_factory=list)
    ignore_keys: list[str] = Field(default_factory=list)  # more volatile JSON keys


@dataclass(frozen=True)
class Response:
    """One GET answer, reduced to what is compared."""

    status: int
    kind: str  # json | text | bytes
    digest: str  # sha256 of the normalized body
    size: int = field(default=0, compare=False)  # raw bytes: volatile fields change it


def sample_get_paths(spec: Any, *, correctness: CorrectnessSpec | None = None, seed: int = PATH_SEED,
                     per_endpoint: int = PATHS_PER_ENDPOINT, limit: int = MAX_PATHS) -> list[str]:
    """GET paths to compare: ``correctness.paths``, ``frontend.pages``, and the GET
    ``load.endpoints`` with their ``{int:a:b}`` placeholders drawn from a fixed seed.

    A locustfile-only target contributes its pages and correctness paths only; the caller
    may add its own paths.
    """
    rng = random.Random(seed)
    paths: list[str] = list(correctness.paths) if correctness else []
    if getattr(spec, "frontend", None) is not None:
        paths += spec.frontend.pages
    for endpoint in spec.load.endpoints:
        if endpoint.method != "GET":
            continue
        draws = per_endpoint if _INT_PLACEHOLDER.search(endpoint.path) else 1
        for _ in range(draws):
            paths.append(_INT_PLACEHOLDER.sub(lambda m: str(rng.randint(int(m[1]), int(m[2]))), endpoint.path))
    return list(dict.fromkeys(paths))[:limit]


def normalize_body(body: bytes, content_type: str, ignore_keys: Iterable[str] = ()) -> tuple[str, str]:
    """(kind, sha256) of a body: JSON canonicalized without volatile keys, anything else raw."""
    drop = VOLATILE_KEYS | set(ignore_keys)
    if "json" in content_type.lower():
        try:
            data = json.loads(body)
        except ValueError:
            pass
        else:
            canonical = json.dumps(_strip(data, drop), sort_keys=True, separators=(",", ":"))
            return "json", hashlib.sha256(canonical.encode()).hexdigest()
    kind = "text" if content_type.lower().startswith("text/") else "bytes"
    return kind, hashlib.sha256(body).hexdigest()


def _strip(value: Any, drop: set[str] | frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v, drop) for v in value]
    return value


def _get(client: httpx.Client, base_url: str, path: str) -> httpx.Response:
    url = base_url.rstrip("/") + "/" + path.lstrip("/")
    try:
        return client.get(url)
    except httpx.HTTPError as exc:
        raise TargetUnreachableError(f"cannot read {url} for the response check: {type(exc).__name__}: {exc}") from exc


def _reduce(resp: httpx.Response, ignore_keys: Iterable[str]) -> Response:
    kind, digest = normalize_body(resp.content, resp.headers.get("content-type", ""), ignore_keys)
    return Response(resp.status_code, kind, digest, len(resp.content))


def capture_responses(base_url: str, paths: Iterable[str], *, timeout: float = TIMEOUT_S,
                      ignore_keys: Iterable[str] = ()) -> dict[str, Response]:
    """GET every path once (bodies decoded, e.g. gzip) -> {path: Response}."""
    ignore = list(ignore_keys)
    with httpx.Client(timeout=timeout) as client:
        return {path: _reduce(_get(client, base_url, path), ignore) for path in paths}


def stable_paths(first: Mapping[str, Response], second: Mapping[str, Response]) -> tuple[dict[str, Response], list[str]]:
    """Two baseline captures -> (the baseline to compare against, paths whose answer moved by itself)."""
    unstable = sorted(p for p in first if p in second and first[p] != second[p])
    baseline = {p: r for p, r in second.items() if p not in unstable}
    return baseline, unstable


def compare_responses(baseline: Mapping[str, Response], current: Mapping[str, Response]) -> list[str]:
    """One line per path whose status or normalized body differs from the baseline's."""
    out = []
    for path, before in baseline.items():
        after = current.get(path)
        if after is None:
            out.append(f"{path}: not captured after the change")
        elif after.status != before.status:
            out.append(f"{path}: status {after.status}, baseline {before.status}")
        elif after.digest != before.digest:
            out.append(f"{path}: {after.kind} body differs from the baseline's ({after.size} vs {before.size} bytes)")
    return out


@dataclass(frozen=True)
class ProbeOutcome:
    read: str
    write_status: int
    before: Response
    after: Response

    @property
    def changed(self) -> bool:
        return self.before.digest != self.after.digest or self.before.status != self.after.status


_nonce = itertools.count(int(time.time() * 1000) % 1_000_000_000)


def _fill_nonce(value: Any, nonce: int) -> Any:
    if value == NONCE:
        return nonce
    if isinstance(value, str):
        return value.replace(NONCE, str(nonce))
    if isinstance(value, dict):
        return {k: _fill_nonce(v, nonce) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_nonce(v, nonce) for v in value]
    return value


def run_probes(base_url: str, probes: Iterable[Probe], *, timeout: float = TIMEOUT_S,
               ignore_keys: Iterable[str] = ()) -> list[ProbeOutcome]:
    """For each probe: read, write (``{nonce}`` filled), read again."""
    ignore = list(ignore_keys)
    out = []
    with httpx.Client(timeout=timeout) as client:
        for probe in probes:
            before = _reduce(_get(client, base_url, probe.read), ignore)
            url = base_url.rstrip("/") + "/" + probe.write.path.lstrip("/")
            body = _fill_nonce(probe.write.json_body, next(_nonce))
            try:
                written = client.request(probe.write.method, url, json=body)
            except httpx.HTTPError as exc:
                raise TargetUnreachableError(f"probe write {probe.write.method} {url} failed: {type(exc).__name__}: {exc}") from exc
            after = _reduce(_get(client, base_url, probe.read), ignore)
            out.append(ProbeOutcome(probe.read, written.status_code, before, after))
    return out


def compare_probes(baseline: list[ProbeOutcome], current: list[ProbeOutcome]) -> list[str]:
    """One line per probe whose read did not reflect the write where the baseline's did."""
    if len(baseline) != len(current):
        raise InputError(f"probe runs differ in length ({len(baseline)} vs {len(current)})")
    out = []
    for base, now in zip(baseline, current, strict=True):
        if not 200 <= now.write_status < 300:
            out.append(f"probe {now.read}: the write answered {now.write_status} (baseline {base.write_status})")
        elif base.changed and not now.changed:
            out.append(f"probe {now.read}: read unchanged after the write (stale), the baseline saw the change")
    return out


class ResponseCheck:
    """``responses==baseline`` for one run: capture on the baseline, check after each change.

    Call ``capture_baseline`` after each baseline window (twice for A/A: the second call
    sets aside the paths whose answer moved by itself), then ``check`` after a change. The
    probes run once on the baseline; paths a probe reads are compared by the probe only
    (its writes change them), so probe writes should touch only what their reads show.
    """

    def __init__(self, paths: Iterable[str], probes: Iterable[Probe] = (), *, ignore_keys: Iterable[str] = (),
                 timeout: float = TIMEOUT_S) -> None:
        self.probes = list(probes)
        probe_reads = {p.read for p in self.probes}
        self.paths = [p for p in dict.fromkeys(paths) if p not in probe_reads]
        self.ignore_keys = list(ignore_keys)
        self.timeout = timeout
        self.baseline: dict[str, Response] | None = None
        self.baseline_probes: list[ProbeOutcome] = []
        self.unstable: list[str] = []

    @classmethod
    def from_spec(cls, spec: Any, correctness: CorrectnessSpec | None = None, extra_paths: Iterable[str] = ()) -> ResponseCheck:
        c = correctness or CorrectnessSpec()
        paths = [*sample_get_paths(spec, correctness=c), *extra_paths]
        return cls(paths, c.probes, ignore_keys=c.ignore_keys)

    def capture_baseline(self, base_url: str) -> None:
        captured = capture_responses(base_url, self.paths, timeout=self.timeout, ignore_keys=self.ignore_keys)
        if self.baseline is None:
            self.baseline = captured
            self.baseline_probes = run_probes(base_url, self.probes, timeout=self.timeout, ignore_keys=self.ignore_keys)
            return
        self.baseline, unstable = stable_paths(self.baseline, captured)
        self.unstable = sorted({*self.unstable, *unstable})

    def check(self, base_url: str) -> list[str]:
        """One line per mismatch after a change; [] means ``responses==baseline`` holds."""
        if self.baseline is None:
            raise InputError("the response check has no baseline capture yet")
        current = capture_responses(base_url, self.baseline, timeout=self.timeout, ignore_keys=self.ignore_keys)
        problems = compare_responses(self.baseline, current)
        if self.probes:
            problems += compare_probes(self.baseline_probes, run_probes(
                base_url, self.probes, timeout=self.timeout, ignore_keys=self.ignore_keys))
        return problems
