"""The target spec (DESIGN.md contract): parse, validate and render placeholders.

Placeholders: ``{port}`` (a free port picked when the toolkit starts the target),
``{workdir}`` (the run's scratch folder) and ``${ENV_VAR}`` (from the environment).
The knobs' models live in tasks/spec_knobs.py, the file's safe reading in tasks/spec_file.py.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from tasks.budget import Budget, parse_budget
from tasks.correctness import CorrectnessSpec
from tasks.db.url import DATABASE_SCHEMES, LOOPBACK_NAMES, check_database_url, url_scheme
from tasks.errors import SpecError, UnsafeTargetError
from tasks.expressions import parse_expressions
from tasks.spec_advisor import CodeSpec, LlmSpec, check_llm_host, check_source_dir
from tasks.spec_file import parse_yaml, read_yaml
from tasks.spec_knobs import (  # re-exported: the knobs are part of the spec
    KNOB_TYPES,
    BoolKnob,
    ChoiceKnob,
    EnvApply,
    FloatKnob,
    HttpApply,
    HttpTarget,
    IntKnob,
    Knob,
)
from tasks.spec_knobs import SpecModel as _Model

__all__ = ["KNOB_TYPES", "BoolKnob", "ChoiceKnob", "EnvApply", "FloatKnob", "HttpApply", "HttpTarget", "IntKnob",
           "Knob", "TargetSpec", "check_loopback", "fill", "load_spec"]
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference_workflows"
REFERENCE_TARGETS = {"ecommerce": "ecommerce", "enterprise-api": "enterprise_api"}
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_LOAD_PROCESSES = 64  # Locust workers of one window (load.processes)
COMPLEXITY_SIZES = [10, 100, 1000, 5000]  # a complexity probe's default sizes
MIN_COMPLEXITY_SIZES = 3  # distinct sizes a complexity fit needs
# A profiling window measures at least this long unless load.profile_s says otherwise. Profilers
# slow the target, and a short window of a slow target then falls under the gate's 200 samples:
# its findings are dropped. Twice in CI the enterprise target's 6 s profiling windows (167-192
# requests) were rejected, and the one valid window left its blocked event loop (a third of the
# loop's time) below significance.
PROFILE_MIN_S = 12.0


def check_path(path: str) -> str:
    """A path on base_url: one leading '/', no other host, no backslash or control character."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"{path!r} must be a path on base_url, starting with one '/'")
    return path


class StartSpec(_Model):
    command: list[str] = Field(min_length=1)
    cwd: str = "."
    env: dict[Annotated[str, Field(pattern=r"^[^=]+$")], str] = Field(default_factory=dict)  # execve: no '=' in a name
    ready_path: str = "/health"
    ready_timeout_s: float = Field(default=60, gt=0, le=600)
    tracing: Literal["opentelemetry"] | None = None

    @field_validator("ready_path")
    @classmethod
    def _ready_path(cls, path: str) -> str:
        return check_path(path)


class DatabaseSpec(_Model):
    url: str
    allow_ddl: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = url_scheme(url)
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported database scheme {scheme!r} (sqlite:/// or postgresql://)")
        return url


class FrontendSpec(_Model):
    pages: list[str] = Field(default_factory=list)
    loads: int = Field(default=3, ge=1, le=20)


class EndpointSpec(_Model):
    name: str
    path: str
    method: Literal["GET", "POST", "PUT", "DELETE", "PATCH"] = "GET"
    weight: int = Field(default=1, ge=1)
    json_body: dict[str, Any] | None = Field(default=None, alias="json")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, path: str) -> str:
        check_path(path)
        for placeholder in re.findall(r"\{int:[^}]*\}", path):  # other braces are literal text
            m = re.fullmatch(r"\{int:(-?\d+):(-?\d+)\}", placeholder)
            if m is None or int(m[1]) > int(m[2]):
                raise ValueError(f"{path!r}: bad placeholder {placeholder} (use {{int:LOW:HIGH}}, LOW <= HIGH)")
        return path


class LoadSpec(_Model):
    locustfile: str | None = None
    endpoints: list[EndpointSpec] = Field(default_factory=list)
    users: int = Field(default=10, ge=1, le=2000)
    spawn_rate: float = Field(default=10, gt=0)
    duration_s: float = Field(default=20, gt=0, le=3600)
    warmup_s: float = Field(default=3, ge=0, le=600)
    # a profiling window's measured length (None: duration_s, at least PROFILE_MIN_S); a fast
    # target's findings may need less, a slow one's more
    profile_s: float | None = Field(default=None, gt=0, le=3600)
    think_time_s: tuple[float, float] = (0.0, 0.0)  # generated scenarios: wait between requests
    pin_cpus: Literal["auto"] | bool = "auto"  # target and the rest on disjoint CPUs (tasks/target/pinning.py)
    # Locust processes: 1 (one process), N > 1 (a master and N workers), or auto (one more worker
    # when the busiest generator process passes tasks/load/generator.py's threshold)
    processes: int | Literal["auto"] = 1

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if value != "auto" and (type(value) is not int or not 1 <= value <= MAX_LOAD_PROCESSES):
            raise ValueError(f"must be a whole number from 1 to {MAX_LOAD_PROCESSES}, or auto (got {value!r})")
        return value

    @property
    def profile_window_s(self) -> float:
        """The measured length of a profiling window."""
        return self.profile_s if self.profile_s is not None else max(self.duration_s, PROFILE_MIN_S)

    @model_validator(mode="after")
    def _scenario(self) -> LoadSpec:
        if not self.locustfile and not self.endpoints:
            raise ValueError("load needs a locustfile or endpoints")
        if not 0 <= self.think_time_s[0] <= self.think_time_s[1]:
            raise ValueError("think_time_s must be [min, max] with 0 <= min <= max")
        return self




class CapacitySpec(_Model):
    """The step load of the capacity model: users per step, seconds per step."""

    levels: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 12, 16, 24, 32], min_length=4)
    step_s: float = Field(default=6.0, ge=3, le=120)


class CostSpec(_Model):
    usd_per_worker_hour: float = Field(default=0.0, ge=0)
    usd_per_instance_hour: float = Field(default=0.0, ge=0)
    usd_per_1k_tokens: float = Field(default=0.0, ge=0)


class ComplexityProbe(_Model):
    """An endpoint whose cost should be measured across sizes: ``path`` holds ``{n}``."""

    name: str
    path: str
    sizes: list[int] = Field(default_factory=lambda: list(COMPLEXITY_SIZES))
    repeats: int = Field(default=5, ge=1, le=50)

    @field_validator("path")
    @classmethod
    def _placeholder(cls, path: str) -> str:
        if not path.startswith("/") or "{n}" not in path:
            raise ValueError(f"complexity path {path!r} must start with '/' and contain {{n}}")
        return path

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[int]) -> list[int]:
        distinct = sorted(set(sizes))
        if len(distinct) < MIN_COMPLEXITY_SIZES or distinct[0] < 1:
            raise ValueError(f"complexity sizes need at least {MIN_COMPLEXITY_SIZES} distinct positive sizes")
        return distinct


class TargetSpec(_Model):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    base_url: str
    start: StartSpec | None = None
    setup: list[list[str]] = Field(default_factory=list)
    database: DatabaseSpec | None = None
    frontend: FrontendSpec | None = None
    load: LoadSpec
    knobs: dict[str, Knob] = Field(default_factory=dict)
    cost: CostSpec | None = None
    capacity: CapacitySpec = Field(default_factory=CapacitySpec)
    complexity: list[ComplexityProbe] = Field(default_factory=list)  # size-parameter probes
    correctness: CorrectnessSpec | None = None  # what `responses==baseline` compares
    performance_goals: list[str] = Field(default_factory=list)
    quality_metrics: list[str] = Field(default_factory=list)
    budget_constraints: Budget = Field(default_factory=Budget)
    optimization_scope: Literal["quick-win", "comprehensive"] = "quick-win"
    llm: LlmSpec | None = None  # the advisor's model server (tasks/spec_advisor.py); None: no model is called
    code: CodeSpec | None = None  # where the advisor's patches may apply
    # where the spec file lives; commands and files are relative to it
    spec_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("budget_constraints", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Budget:
        return parse_budget(value)

    @field_validator("performance_goals", "quality_metrics")
    @classmethod
    def _expressions(cls, value: list[str]) -> list[str]:
        parse_expressions(value)
        return value

    @field_validator("knobs", mode="before")
    @classmethod
    def _knob_types(cls, knobs: Any) -> Any:
        if isinstance(knobs, dict):
            for name, knob in knobs.items():
                kind = knob.get("type") if isinstance(knob, dict) else None
                if kind not in KNOB_TYPES:
                    raise ValueError(f"knob {name!r} has unknown type {kind!r} (known: {', '.join(KNOB_TYPES)})")
        return knobs

    def default_config(self) -> dict[str, Any]:
        return {name: knob.default for name, knob in self.knobs.items()}

    def locustfile_path(self) -> Path | None:
        return (self.spec_dir / self.load.locustfile).resolve() if self.load.locustfile else None


def fill(value: str, *, port: int | None = None, workdir: Path | str | None = None) -> str:
    """Render ``{port}``, ``{workdir}`` and ``${ENV}`` in one string."""
    def env(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise SpecError(f"environment variable ${{{name}}} used in the spec is not set")
        return os.environ[name]

    out = _ENV_VAR.sub(env, value)
    if port is not None:
        out = out.replace("{port}", str(port))
    if workdir is not None:
        out = out.replace("{workdir}", str(workdir))
    return out


def resolve_spec_path(target: str | Path) -> Path:
    """A reference workflow name (``ecommerce``) or a spec file path -> the spec file."""
    name = str(target)
    if name in REFERENCE_TARGETS:
        return REFERENCE_DIR / REFERENCE_TARGETS[name] / "target.yaml"
    path = Path(name)
    if not path.is_file():
        known = ", ".join(REFERENCE_TARGETS)
        raise SpecError(f"target {name!r} is neither a spec file nor a reference workflow ({known})")
    return path.resolve()


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{loc}: {msg}" if loc else msg


def load_spec(target: str | Path, *, allow_remote: bool = False, database_url: str | None = None) -> TargetSpec:
    """Read and validate a target spec; every problem is one SpecError line.

    ``database_url`` (the CLI's ``--db``) replaces the spec's database URL everywhere the spec
    repeats it (setup commands, start env), so the target, its seed and the agents agree.
    """
    path = resolve_spec_path(target)
    text, raw = read_yaml(path)
    if database_url is not None:
        raw = parse_yaml(path, _replace_database_url(raw, text, database_url, allow_remote))
    return spec_from_raw(raw, path, allow_remote=allow_remote)


def spec_from_raw(raw: Any, path: Path, *, allow_remote: bool = False) -> TargetSpec:
    """A parsed spec file (``path``'s YAML) validated and checked; every problem is one SpecError line."""
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a target spec is a mapping of keys")
    try:
        spec = TargetSpec(**raw, spec_dir=path.parent)
    except ValidationError as exc:
        raise SpecError(f"{path}: {first_error(exc)}") from exc
    except SpecError:
        raise
    except Exception as exc:  # an ExpressionError / BudgetError raised inside a validator
        raise SpecError(f"{path}: {exc}") from exc
    check_files(spec, path)
    check_loopback(spec.base_url, allow_remote=allow_remote)
    if spec.llm is not None:
        try:
            check_loopback(spec.llm.base_url, allow_remote=True)  # its shape: http(s), no user info
        except SpecError as exc:
            raise SpecError(f"{path}: llm.{exc}") from exc
        check_llm_host(spec.llm, allow_remote=allow_remote)
    check_env_vars(spec)
    if spec.database is not None:  # the spec's own URL, as --db's, once ${ENV} is filled in
        check_database_url(fill(spec.database.url, port=1, workdir="/workdir"), allow_remote=allow_remote)
    return spec


def check_env_vars(spec: TargetSpec) -> None:
    """Every ``${ENV}`` the target's commands and environment use is set now, not at their start."""
    start = spec.start
    for text in [*(start.command if start else []), *(start.env.values() if start else []), *sum(spec.setup, [])]:
        fill(text)


def _replace_database_url(raw: Any, text: str, url: str, allow_remote: bool) -> str:
    check_database_url(url, allow_remote=allow_remote)
    database = raw.get("database") if isinstance(raw, dict) else None
    old = database.get("url") if isinstance(database, dict) else None
    if not old or not isinstance(old, str):
        raise SpecError("--db given, but the spec has no database.url to replace")
    return text.replace(old, url)


def check_files(spec: TargetSpec, path: Path) -> None:
    locustfile = spec.locustfile_path()
    if locustfile is not None and not locustfile.is_file():
        raise SpecError(f"{path}: load.locustfile {spec.load.locustfile!r} not found ({locustfile})")
    if spec.start is not None:
        cwd = (spec.spec_dir / spec.start.cwd).resolve()
        if not cwd.is_dir():
            raise SpecError(f"{path}: start.cwd {spec.start.cwd!r} is not a folder ({cwd})")
    if spec.code is not None:
        check_source_dir(spec.code, spec.spec_dir, path)


def check_loopback(base_url: str, *, allow_remote: bool = False) -> None:
    """Refuse load to anything but loopback unless the user passed --allow-remote."""
    url = fill(base_url, port=1)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 address
        raise SpecError(f"base_url {base_url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"base_url {base_url!r} is not an http(s) URL")
    if "\\" in url or "@" in parts.netloc or any(c.isspace() or ord(c) < 32 for c in url):
        raise SpecError(f"base_url {base_url!r}: no user info, backslash or whitespace (browsers read another host)")
    try:
        _ = parts.port
    except ValueError as exc:
        raise SpecError(f"base_url {base_url!r}: {exc}") from exc
    host = parts.hostname
    if allow_remote or host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise UnsafeTargetError(f"base_url host {host!r} is not loopback; pass --allow-remote to send load there")
