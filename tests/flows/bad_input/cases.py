"""The bad-input corpus: each case is input the CLI must refuse with one stderr line naming the
problem (``needle`` is in it), exit code 2, and nothing written.

A case: ``id``; ``argv`` (``{spec}``, ``{store}``, ``{json}`` and ``{tmp}`` are filled in by the
driver); ``spec`` (a dict dumped as YAML, or the file's raw text or bytes); ``store`` (a store
that exists before the run: dir, empty, garbage, foreign, newer, ours); ``env``; ``files``.
"""

from __future__ import annotations

import copy
from typing import Any

GOOD: dict[str, Any] = {
    "name": "shop",
    "base_url": "http://127.0.0.1:{port}",
    "start": {"command": ["python", "-m", "http.server", "{port}"]},
    "load": {"endpoints": [{"name": "home", "path": "/"}], "duration_s": 5},
    "knobs": {"workers": {"type": "int", "low": 1, "high": 2, "default": 1, "apply": {"env": "W"}}},
}
RUN = ["run", "{spec}", "--store", "{store}", "--json", "{json}"]
REMOTE_PG = "postgresql://app@db.prod.example.com:5432/shop"
LOCAL_PG = "postgresql://app@127.0.0.1:5432/shop"
CASES: list[dict[str, Any]] = []


def spec(**overrides: Any) -> dict[str, Any]:
    """GOOD with top-level keys replaced (None removes one); ``load__users=0`` sets a nested key."""
    out = copy.deepcopy(GOOD)
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out


def case(id: str, needle: str, *, argv: list[str] | None = None, flags: tuple[str, ...] = (), **fields: Any) -> None:
    if any(c["id"] == id for c in CASES):
        raise ValueError(f"duplicate case id {id!r}")
    CASES.append({"id": id, "needle": needle, "argv": [*(argv or RUN), *flags],
                  "spec": fields.pop("spec", GOOD), **fields})


def knob(**fields: Any) -> dict[str, Any]:
    return spec(knobs={"k": {"type": "int", "low": 1, "high": 4, "default": 2, "apply": {"env": "K"}, **fields}})


def endpoint(path: str, **fields: Any) -> dict[str, Any]:
    return spec(load={"endpoints": [{"name": "e", "path": path, **fields}], "duration_s": 5})


def http_knob(path: str, **fields: Any) -> dict[str, Any]:
    return knob(apply={"http": {"method": "PUT", "path": path, "field": "k", **fields}})


# --- the spec file itself ------------------------------------------------------------------
case("spec-not-utf8", "not UTF-8", spec=b"name: shop\nbase_url: http://127.0.0.1:{port}\n# \xff\xfe caf\xe9\n")
case("spec-binary", "not", spec=bytes(range(256)))
case("spec-nul-bytes", "not valid YAML", spec="name: shop\x00\n")
case("spec-yaml-syntax", "not valid YAML", spec="name: [shop\nbase_url: x\n")
case("spec-tab-indent", "not valid YAML", spec="name: shop\nload:\n\tusers: 3\n")
case("spec-deep-lists", "nested too deeply", spec="x: " + "[" * 5000 + "]" * 5000 + "\n")
case("spec-deep-maps", "nested too deeply", spec="x: " + "{a: " * 5000 + "b" + "}" * 5000 + "\n")
case("spec-alias-bomb", "aliases are expanded", spec="a: &a [x, x, x, x, x, x, x, x, x]\n"
     + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
               f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)))
case("spec-oversized", "at most", spec="name: shop\n" + "# padding\n" * 120_000)
case("spec-empty-file", "mapping of keys", spec="")
case("spec-only-comments", "mapping of keys", spec="# nothing here\n")
case("spec-a-list", "mapping of keys", spec="- name: shop\n")
case("spec-a-scalar", "mapping of keys", spec="shop\n")
case("spec-two-documents", "not valid YAML", spec="name: shop\n---\nname: other\n")
case("spec-int-tag-on-text", "not valid YAML", spec="name: !!int shop\n")
case("spec-bad-timestamp", "not valid YAML", spec="name: shop\nwhen: !!timestamp 2024-13-45\n")
case("spec-python-tag", "not valid YAML", spec="name: !!python/object/apply:os.system [echo hi]\n")
case("spec-set-tag-name", "name", spec="name: !!set {shop}\nbase_url: http://127.0.0.1:{port}\n"
     "start: {command: [python, app.py]}\nload: {endpoints: [{name: e, path: /}]}\n")
case("spec-surrogate", "lone surrogate", spec=spec(load={"endpoints": [{"name": "e", "path": "/\ud800"}]}))
case("spec-missing-file", "neither a spec file", argv=["run", "{tmp}/absent.yaml", "--store", "{store}"])
case("spec-is-a-directory", "neither a spec file", argv=["run", "{tmp}", "--store", "{store}"])
case("spec-proc-mem", "cannot read", argv=["run", "/proc/self/mem", "--store", "{store}"])
case("spec-dev-null", "neither a spec file", argv=["run", "/dev/null", "--store", "{store}"])
case("spec-unknown-reference", "neither a spec file", argv=["run", "shopify", "--store", "{store}"])

# --- top-level keys ------------------------------------------------------------------------
case("key-unknown", "unknown key", spec=spec(colour="blue"))
case("key-name-missing", "name", spec=spec(name=None))
case("key-name-uppercase", "name", spec=spec(name="Shop"))
case("key-name-traversal", "name", spec=spec(name="../../etc"))
case("key-name-empty", "name", spec=spec(name=""))
case("key-name-newline", "name", spec=spec(name="shop\n"))
case("key-base-url-missing", "base_url", spec=spec(base_url=None))
case("key-load-missing", "load", spec=spec(load=None))
case("key-scope-unknown", "optimization_scope", spec=spec(optimization_scope="everything"))
case("key-goals-a-string", "performance_goals", spec=spec(performance_goals="p95_ms<=1"))
case("key-goals-numbers", "performance_goals", spec=spec(performance_goals=[200]))
case("key-goals-bad", "'fast'", spec=spec(performance_goals=["p95_ms<=fast"]))
case("key-quality-bad", "unknown metric", spec=spec(quality_metrics=["latency<=3"]))
case("key-setup-not-lists", "setup", spec=spec(setup=["python seed.py"]))
case("key-setup-nul", "NUL", spec=spec(setup=[["python", "seed\x00.py"]]))
case("key-start-command-empty", "start.command", spec=spec(start__command=[]))
case("key-start-command-nul", "NUL", spec=spec(start__command=["python", "-c", "\x00"]))
case("key-start-cwd-missing", "start.cwd", spec=spec(start__cwd="nowhere"))
case("key-start-timeout-negative", "ready_timeout_s", spec=spec(start__ready_timeout_s=-1))
case("key-start-timeout-inf", "ready_timeout_s", spec="name: shop\nbase_url: http://127.0.0.1:{port}\n"
     "start: {command: [python, app.py], ready_timeout_s: .inf}\nload: {endpoints: [{name: e, path: /}]}\n")
case("key-start-tracing", "tracing", spec=spec(start__tracing="zipkin"))
case("key-start-env-number", "start.env", spec=spec(start__env={"W": 3}))
case("key-start-env-name-equals", "start.env", spec=spec(start__env={"A=B": "x"}))
case("key-start-env-name-empty", "start.env", spec=spec(start__env={"": "x"}))
case("key-start-env-value-nul", "NUL", spec=spec(start__env={"A": "x\x00y"}))
case("key-start-env-unset-var", "NO_SUCH_VAR_PERFAGENTS", spec=spec(start__env={"A": "${NO_SUCH_VAR_PERFAGENTS}"}))
case("key-setup-unset-var", "NO_SUCH_VAR_PERFAGENTS", spec=spec(setup=[["echo", "${NO_SUCH_VAR_PERFAGENTS}"]]))
case("key-ready-path-url", "ready_path", spec=spec(start__ready_path="http://evil.example/health"))

# --- base_url ------------------------------------------------------------------------------
for i, (url, needle) in enumerate([
    ("http://user:pw@127.0.0.1:{port}", "user info"),
    ("http://127.0.0.1:{port}@evil.example", "user info"),
    ("http://127.0.0.1:{port}\\@evil.example", "backslash"),
    ("http://127.0.0.1:notaport", "base_url"),
    ("http://127.0.0.1:99999", "base_url"),
    ("http://[::1", "base_url"),
    ("ftp://127.0.0.1:{port}", "not an http(s) URL"),
    ("http://", "not an http(s) URL"),
    ("127.0.0.1:8000", "not an http(s) URL"),
    ("http://127.0.0.1:{port}/a b", "whitespace"),
    ("http://127.0.0.1:{port}/\nx", "whitespace"),
    ("http://10.1.2.3:8080", "--allow-remote"),
    ("http://[2001:db8::1]:8080", "--allow-remote"),
    ("http://127.0.0.1.evil.example:8080", "--allow-remote"),
    ("http://0.0.0.0:8080", "--allow-remote"),
    ("http://${NO_SUCH_VAR_PERFAGENTS}:8080", "NO_SUCH_VAR_PERFAGENTS"),
]):
    case(f"base-url-{i:02d}", needle, spec=spec(base_url=url))

# --- database ------------------------------------------------------------------------------
for i, (url, needle) in enumerate([
    ("mysql://root@127.0.0.1/shop", "unsupported database scheme"),
    ("sqlite://shop.db", "sqlite:///"),
    ("sqlite:///", "sqlite:///"),
    (REMOTE_PG, "not loopback"),
    (LOCAL_PG + "?host=db.prod.example.com", "not loopback"),
    (LOCAL_PG + "?hostaddr=10.0.0.5", "not loopback"),
    (LOCAL_PG + "?host=127.0.0.1,evil.example", "not loopback"),
    (LOCAL_PG + "?service=prod", "service="),
    (LOCAL_PG + "?servicefile=/etc/pg_service.conf", "servicefile="),
    ("postgresql://app@127.0.0.1,evil.example/shop", "not loopback"),
    ("postgresql://app@127.0.0.1:5432\n/shop", "database"),
    ("postgresql://app@127.0.0.1:abc/shop", "database"),
    ("postgresql://app@127.0.0.1:5432/", "dbname"),
    ("postgresql://app@127.0.0.1:5432/shop\x00", "NUL"),
    ("postgresql://app@[::1/shop", "database"),
    ("postgresql://app@${NO_SUCH_VAR_PERFAGENTS}:5432/shop", "NO_SUCH_VAR_PERFAGENTS"),
]):
    case(f"database-url-{i:02d}", needle, spec=spec(database={"url": url}))
case("database-url-env-remote", "not loopback", spec=spec(database={"url": "postgresql://app@${PERFAGENTS_TEST_DB_HOST}/shop"}),
     env={"PERFAGENTS_TEST_DB_HOST": "db.prod.example.com"})
case("database-url-missing", "database.url", spec=spec(database={"allow_ddl": True}))
case("database-url-number", "database.url", spec=spec(database={"url": 5432}))
case("database-allow-ddl-maybe", "allow_ddl", spec=spec(database={"url": LOCAL_PG, "allow_ddl": "maybe"}))

# --- --db ----------------------------------------------------------------------------------
DB_SPEC = spec(database={"url": LOCAL_PG})
for i, (url, needle) in enumerate([
    (REMOTE_PG, "not loopback"),
    (LOCAL_PG + "?host=db.prod.example.com", "not loopback"),
    (LOCAL_PG + "?hostaddr=192.0.2.7", "not loopback"),
    ("postgresql://app@127.0.0.1:5432/shop\nhost=evil", "database"),
    ("postgresql://app@127.0.0.1:5432/shop\r\n", "database"),
    ("mysql://root@127.0.0.1/shop", "database URL"),
    ("host=db.prod.example.com dbname=shop", "database URL"),
    ("postgresql://app@[::1/shop", "database"),
    ("postgresql://app:pw@[::1/shop", "database"),
    ("postgresql://app@127.0.0.1:99999/shop", "database"),
    ("", "database URL"),
]):
    case(f"db-flag-{i:02d}", needle, spec=DB_SPEC, flags=("--db", url))
case("db-flag-without-spec-database", "no database.url", flags=("--db", LOCAL_PG))
case("db-flag-spec-database-a-list", "no database.url", spec=spec(database=["sqlite:///x.db"]), flags=("--db", LOCAL_PG))
case("db-flag-spec-database-url-number", "no database.url", spec=spec(database={"url": 5432}), flags=("--db", LOCAL_PG))
case("db-flag-password-conflict", "PGPASSWORD", spec=DB_SPEC, env={"PGPASSWORD": "one"},
     flags=("--db", "postgresql://app:two@127.0.0.1:5432/shop"))

# --- load and endpoints --------------------------------------------------------------------
for i, (path, needle) in enumerate([
    ("http://evil.example/", "path on base_url"),
    ("//evil.example/x", "path on base_url"),
    ("/\\evil.example", "path on base_url"),
    ("api/products", "path on base_url"),
    ("", "path on base_url"),
    ("/p?page={int:5:1}", "bad placeholder"),
    ("/p?page={int:a:b}", "bad placeholder"),
    ("/p?page={int:1}", "bad placeholder"),
    ("/p\r\nHost: evil.example", "path"),
    ("/p\x00", "NUL"),
]):
    case(f"endpoint-path-{i:02d}", needle, spec=endpoint(path))
case("endpoint-method", "method", spec=endpoint("/", method="TRACE"))
case("endpoint-weight-zero", "weight", spec=endpoint("/", weight=0))
case("endpoint-name-missing", "name", spec=spec(load={"endpoints": [{"path": "/"}]}))
case("endpoint-json-list", "json", spec=endpoint("/", method="POST", json=[1, 2]))
case("load-no-scenario", "locustfile or endpoints", spec=spec(load={"users": 3}))
case("load-endpoints-mapping", "endpoints", spec=spec(load={"endpoints": {"name": "e", "path": "/"}}))
case("load-locustfile-missing", "nowhere.py", spec=spec(load={"locustfile": "nowhere.py"}))
case("load-locustfile-a-dir", "locustfile", spec=spec(load={"locustfile": "."}))
case("load-users-zero", "users", spec=spec(load__users=0))
case("load-users-huge", "users", spec=spec(load__users=10**9))
case("load-spawn-rate-zero", "spawn_rate", spec=spec(load__spawn_rate=0))
case("load-duration-negative", "duration_s", spec=spec(load__duration_s=-5))
case("load-duration-inf", "duration_s", spec="name: shop\nbase_url: http://127.0.0.1:{port}\n"
     "start: {command: [python, app.py]}\nload: {endpoints: [{name: e, path: /}], duration_s: .inf}\n")
case("load-warmup-nan", "warmup_s", spec="name: shop\nbase_url: http://127.0.0.1:{port}\n"
     "start: {command: [python, app.py]}\nload: {endpoints: [{name: e, path: /}], warmup_s: .nan}\n")
case("load-think-reversed", "think_time_s", spec=spec(load__think_time_s=[2, 1]))
case("load-think-negative", "think_time_s", spec=spec(load__think_time_s=[-1, 1]))
case("load-think-three", "think_time_s", spec=spec(load__think_time_s=[0, 1, 2]))
case("load-pin-cpus", "pin_cpus", spec=spec(load__pin_cpus="maybe"))
case("load-processes-zero", "processes", spec=spec(load__processes=0))
case("load-processes-word", "processes", spec=spec(load__processes="many"))
case("load-processes-bool", "processes", spec=spec(load__processes=True))
case("load-processes-float", "processes", spec=spec(load__processes=1.5))
case("load-processes-huge", "processes", spec=spec(load__processes=1000))

# --- knobs ---------------------------------------------------------------------------------
case("knob-type-unknown", "unknown type 'integer'", spec=knob(type="integer"))
case("knob-type-missing", "unknown type None", spec=spec(knobs={"k": {"low": 1, "high": 2, "default": 1, "apply": {"env": "K"}}}))
case("knob-not-a-mapping", "unknown type", spec=spec(knobs={"k": 3}))
case("knobs-a-list", "knobs", spec=spec(knobs=[{"type": "bool", "apply": {"env": "K"}}]))
case("knob-low-above-high", "low 5 is above high 4", spec=knob(low=5))
case("knob-default-outside", "outside [1, 4]", spec=knob(default=9))
case("knob-int-fraction", "low", spec=knob(low=1.5))
case("knob-step-zero", "step", spec=knob(step=0))
case("knob-float-inf", "high", spec="name: shop\nbase_url: http://127.0.0.1:{port}\nstart: {command: [python, app.py]}\n"
     "load: {endpoints: [{name: e, path: /}]}\n"
     "knobs: {f: {type: float, low: 0, high: .inf, default: 1, apply: {env: F}}}\n")
case("knob-float-nan-default", "default", spec="name: shop\nbase_url: http://127.0.0.1:{port}\nstart: {command: [python, app.py]}\n"
     "load: {endpoints: [{name: e, path: /}]}\n"
     "knobs: {f: {type: float, low: 0, high: 1, default: .nan, apply: {env: F}}}\n")
case("knob-choice-default", "not one of", spec=spec(knobs={"c": {"type": "choice", "choices": ["a"], "default": "b", "apply": {"env": "C"}}}))
case("knob-choice-empty", "choices", spec=spec(knobs={"c": {"type": "choice", "choices": [], "default": "a", "apply": {"env": "C"}}}))
case("knob-bool-maybe", "default", spec=spec(knobs={"b": {"type": "bool", "default": "maybe", "apply": {"env": "B"}}}))
case("knob-name-newline", "low 3 is above high 1", spec=spec(knobs={"w\nx": {"type": "int", "low": 3, "high": 1, "default": 2, "apply": {"env": "W"}}}))
case("knob-apply-missing", "apply", spec=spec(knobs={"b": {"type": "bool"}}))
case("knob-apply-both", "apply", spec=knob(apply={"env": "K", "http": {"path": "/c", "field": "k"}}))
for i, name in enumerate(["1BAD", "A-B", "A=B", "", "A B", "K\n"]):
    case(f"knob-env-name-{i}", "env", spec=knob(apply={"env": name}))
for i, path in enumerate(["http://evil.example/c", "//evil.example/c", "/c@evil", "/\\evil", "c", "/c d", "/c\n"]):
    case(f"knob-http-path-{i}", "path", spec=http_knob(path))
case("knob-http-method", "method", spec=http_knob("/c", method="GET"))
case("knob-http-field-missing", "field", spec=knob(apply={"http": {"path": "/c"}}))

# --- other sections ------------------------------------------------------------------------
case("complexity-no-n", "{n}", spec=spec(complexity=[{"name": "c", "path": "/items"}]))
case("complexity-sizes", "distinct positive sizes", spec=spec(complexity=[{"name": "c", "path": "/i/{n}", "sizes": [1, 1, 2]}]))
case("complexity-absolute-url", "complexity path", spec=spec(complexity=[{"name": "c", "path": "http://evil/{n}"}]))
case("capacity-levels", "capacity.levels", spec=spec(capacity={"levels": [1, 2]}))
case("capacity-step", "capacity.step_s", spec=spec(capacity={"step_s": 1}))
case("cost-negative", "cost.usd_per_worker_hour", spec=spec(cost={"usd_per_worker_hour": -1}))
case("frontend-loads", "frontend.loads", spec=spec(frontend={"pages": ["/"], "loads": 0}))
case("correctness-method", "correctness", spec=spec(correctness={"probes": [{"write": {"method": "GET", "path": "/"}, "read": "/"}]}))
case("budget-key-unknown", "unknown budget key", spec=spec(budget_constraints={"hours": 1}))
case("budget-key-negative", "minutes", spec=spec(budget_constraints={"minutes": -1}))
case("budget-key-nan", "minutes", spec="name: shop\nbase_url: http://127.0.0.1:{port}\nstart: {command: [python, app.py]}\n"
     "load: {endpoints: [{name: e, path: /}]}\nbudget_constraints: {minutes: .nan}\n")
case("budget-key-a-list", "budget", spec=spec(budget_constraints=[1, 2]))

# --- flags: goals, quality, budget, scope ---------------------------------------------------
for i, (goal, needle) in enumerate([
    ("p95_ms<=fast", "'fast'"), ("p95<=1", "unknown metric"), ("p95_ms=<1", "bad"), ("p95_ms<=-1", "finite number >= 0"),
    ("p95_ms<=1e999", "finite"), ("p95_ms<=nan", "bad value"), ("p95_ms<=inf", "bad value"), ("rps>=", "bad expression"),
    ("p95_ms[]<=1", "bad expression"), ("p95_ms<=1*baseline*2", "bad value"), ("p95_ms<=-1*baseline", "bad value"),
    ("responses<=5", "only be compared with baseline"), ("p95_ms<=>3", "bad expression"), ("p95_ms" * 20000 + "<=1", "characters"),
    ("p95_ms" + " " * 100_000 + "<=1", "characters"), ("p95_ms<=1" + " " * 100_000 + "x", "characters"),
]):
    case(f"goals-{i:02d}", needle, flags=("--goals", goal))
for i, (quality, needle) in enumerate([
    ("error_rate<=5", "fraction"), ("latency<=3", "unknown metric"), ("error_rate<=1e999*baseline", "finite"),
    ("p99_ms<=1.1*base", "bad value"),
]):
    case(f"quality-{i}", needle, flags=("--quality", quality))
for i, (budget, needle) in enumerate([
    ("minutes=soon", "minutes"), ("minutes=inf", "minutes"), ("minutes=-1", "minutes"), ("minutes=0", "minutes"),
    ("iterations=1.5", "iterations"), ("iterations=-1", "iterations"), ("tokens=1e99", "tokens"), ("hours=1", "unknown budget key"),
    ("minutes", "key=value"), ("=5", "unknown budget key"), ("minutes=nan", "minutes"), ("minutes=1e999", "minutes"),
    ("usd=-0.5", "usd"),
]):
    case(f"budget-{i:02d}", needle, flags=("--budget", budget))
for i, scope in enumerate(["everything", "", "QUICK-WIN", "quick_win"]):
    case(f"scope-{i}", "scope", flags=("--scope", scope))
case("agents-env-unknown", "PERFAGENTS_AGENTS", env={"PERFAGENTS_AGENTS": "application,profiler"})

# --- --store and --json for a run ----------------------------------------------------------
STORE_RUN = ["run", "{spec}", "--json", "{json}", "--store"]
case("store-run-a-dir", "store", argv=[*RUN[:2], "--store", "{store}"], store="dir")
case("store-run-empty", "not a valid DuckDB", argv=RUN, store="empty")
case("store-run-garbage", "not a valid DuckDB", argv=RUN, store="garbage")
case("store-run-foreign", "not a perfagents store", argv=RUN, store="foreign")
case("store-run-newer", "newer perfagents", argv=RUN, store="newer")
case("store-run-proc", "/proc/x", argv=[*STORE_RUN, "/proc/x"])
case("store-run-under-a-file", "store.duckdb", argv=[*STORE_RUN, "{tmp}/notes.txt/store.duckdb"], files={"notes.txt": "hi"})
case("store-run-empty-path", "cannot write", argv=[*STORE_RUN, ""])
case("store-run-nul", "store", argv=[*STORE_RUN, "{tmp}/s\x00.duckdb"])
case("json-a-dir", "cannot write", argv=["run", "{spec}", "--store", "{store}", "--json", "{tmp}"])
case("json-proc", "/proc/x", argv=["run", "{spec}", "--store", "{store}", "--json", "/proc/x/out.json"])

# --- history and revert on bad stores ------------------------------------------------------
for command in ("history", "revert"):
    for kind, needle in (("dir", "no store"), ("empty", "not a valid DuckDB"), ("garbage", "not a valid DuckDB"),
                         ("foreign", "not a perfagents store"), ("newer", "newer perfagents")):
        case(f"{command}-store-{kind}", needle, argv=[command, "--store", "{store}"], store=kind, spec=None)
    case(f"{command}-store-absent", "no store", argv=[command, "--store", "{tmp}/absent.duckdb"], spec=None)
    case(f"{command}-store-proc", "no store", argv=[command, "--store", "/proc/x"], spec=None)
    case(f"{command}-store-nul", "store", argv=[command, "--store", "{tmp}/s\x00.duckdb"], spec=None)
case("history-limit-zero", "--limit", argv=["history", "--limit", "0", "--store", "{store}"], store="ours", spec=None)

# --- the dashboard: a bad store or port is refused before anything listens -----------------
DASHBOARD = ["dashboard", "--store", "{store}", "--port"]
for kind, needle in (("dir", "no store"), ("empty", "not a valid DuckDB"), ("garbage", "not a valid DuckDB"),
                     ("foreign", "not a perfagents store"), ("newer", "newer perfagents")):
    case(f"dashboard-store-{kind}", needle, argv=[*DASHBOARD, "65000"], store=kind, spec=None)
case("dashboard-store-absent", "no store", argv=["dashboard", "--store", "{tmp}/absent.duckdb"], spec=None)
for port in ("0", "65536", "-1", "99999999"):
    case(f"dashboard-port-{port}", "--port must be between 1 and 65535", argv=[*DASHBOARD, port], store="ours", spec=None)
case("usage-port-not-a-number", "--port", argv=[*DASHBOARD, "http"], store="ours", spec=None)

# --- usage errors (click's): one line too ---------------------------------------------------
case("usage-unknown-option", "No such option", flags=("--nope",))
case("usage-limit-not-a-number", "--limit", argv=["history", "--limit", "x", "--store", "{store}"], store="ours", spec=None)
case("usage-max-tokens-not-a-number", "--max-tokens", argv=["evidence", "--max-tokens", "many", "--store", "{store}"], spec=None)
case("usage-missing-target", "target", argv=["run", "--store", "{store}"], spec=None)
