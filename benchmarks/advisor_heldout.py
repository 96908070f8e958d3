"""The advisor on targets it was not built on: Flask apps with an N+1, fixed by a replayed patch.

    .venv/bin/python benchmarks/advisor_heldout.py [--variant NAME ...] [--json PATH]

Each variant writes a Flask app (a reviews page that reads a product's reviews, then one
customers query per review) into a fresh git work tree, seeds its SQLite database with N
reviews per product, and serves it as a user would: gunicorn (1 worker, 4 threads) or Flask's
own threaded server. ``llm:`` points at the tests' local OpenAI-compatible replay server
(tests/tasks/advisor/replay_server.py), which answers a prompt about ``app:list_reviews``
with a correct fix (one JOIN) as a unified diff made by git against the file as written, and
any other prompt with an answer that holds no patch. Then the real CLI: ``perfagents run <spec> --scope quick-win --json``, and a
second run on a fresh copy of the same source with the same store.

Printed per variant, and as JSON: the patch's status and measured effect (metric, ratio, 95%
CI, regime, and its p95 ratio when the decision was on another metric), the advisor's ``tokens_in`` against the prompt tokens the server reported, the
largest prompt against ``max_context_tokens``, and the second run's model calls and cache hits.
Nothing here is asserted: it is what the issue's held-out check looks at, measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_HOME", str(REPO / ".perfagents" / "prefect"))  # as `make` sets it
PERFAGENTS = Path(sys.executable).parent / "perfagents"
RUN_ALL_TIMEOUT_S = 1500  # benchmarks/run_all.py: about 17 minutes with the defaults (3 variants, 2 runs each)
RUN_TIMEOUT_S = 600
MAX_CONTEXT_TOKENS = 4000
# name: (server, reviews per product, users)
VARIANTS = {"gunicorn-80": ("gunicorn", 80, 8), "flask-20": ("flask", 20, 8), "flask-10": ("flask", 10, 8)}

APP = '''"""A Flask reviews page."""
import os
import sqlite3

from flask import Flask, g, jsonify

app = Flask(__name__)


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(os.environ["REVIEWS_DB"])
    return g.db


@app.teardown_appcontext
def close_db(exc):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def list_reviews(db, product_id):
    reviews = db.execute("SELECT id, customer_id, body FROM reviews WHERE product_id = ? ORDER BY id",
                         (product_id,)).fetchall()
    out = []
    for rid, customer_id, body in reviews:
        name = db.execute("SELECT name FROM customers WHERE id = ?", (customer_id,)).fetchone()[0]
        out.append({"id": rid, "reviewer": name, "body": body})
    return out


@app.route("/products/<int:product_id>/reviews")
def reviews(product_id):
    return jsonify(list_reviews(get_db(), product_id))


@app.route("/health")
def health():
    return "ok"
'''

FIXED = '''def list_reviews(db, product_id):
    rows = db.execute("SELECT r.id, c.name, r.body FROM reviews r JOIN customers c ON c.id = r.customer_id "
                      "WHERE r.product_id = ? ORDER BY r.id", (product_id,)).fetchall()
    return [{"id": rid, "reviewer": name, "body": body} for rid, name, body in rows]
'''

SEED = '''import sqlite3
import sys

path, per_product = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(path)
con.executescript("""
DROP TABLE IF EXISTS customers; DROP TABLE IF EXISTS reviews;
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE reviews (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL, customer_id INTEGER NOT NULL, body TEXT);
CREATE INDEX reviews_product ON reviews (product_id);
""")
con.executemany("INSERT INTO customers VALUES (?, ?, ?)", [(i, f"c{i}@example.com", f"customer {i}") for i in range(1, 3001)])
con.executemany("INSERT INTO reviews (product_id, customer_id, body) VALUES (?, ?, ?)",
                [(p, (p * 97 + r * 31) % 3000 + 1, f"review {r} of {p}") for p in range(1, 21) for r in range(per_product)])
con.commit()
'''


def replay_server_module() -> Any:
    spec = importlib.util.spec_from_file_location("advisor_replay_server", REPO / "tests" / "tasks" / "advisor" / "replay_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", *args], cwd=cwd,
                          check=True, capture_output=True, text=True, timeout=60).stdout


def work_tree(src: Path) -> None:
    """A fresh git work tree holding the app, committed."""
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    (src / "app.py").write_text(APP)
    (src / "seed.py").write_text(SEED)
    (src / ".gitignore").write_text("__pycache__/\n")
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "app")


def fix_answer(src: Path) -> dict[str, Any]:
    """The recorded answer: the JOIN as a unified diff that git made against the app as written."""
    fixed = re.sub(r"def list_reviews\(db, product_id\):\n(    .*\n)+", FIXED, APP)
    (src / "app.py").write_text(fixed)
    diff = git(src, "diff", "app.py")
    git(src, "checkout", "app.py")
    body = "\n".join(line for line in diff.splitlines() if not line.startswith(("diff --git", "index "))) + "\n"
    return {"model": "small-model", "match": "location: app:list_reviews",
            "content": f"One JOIN returns every reviewer with its review.\n\n```diff\n{body}```\n"}


# what a model says about any other function: an answer without a patch (the matches are tried in
# order, and "" occurs in every prompt)
NO_PATCH = {"model": "*", "match": "", "content": "Nothing in this function is clearly worth changing: no patch."}


def spec_for(name: str, server: str, reviews: int, users: int, llm_url: str) -> dict[str, Any]:
    command = ([sys.executable, "-m", "gunicorn", "-w", "1", "--threads", "4", "-b", "127.0.0.1:{port}", "app:app"]
               if server == "gunicorn" else
               [sys.executable, "-m", "flask", "--app", "app", "run", "--port", "{port}", "--with-threads"])
    return {
        "name": f"heldout-{name}", "base_url": "http://127.0.0.1:{port}",
        "start": {"command": command, "cwd": "src", "env": {"REVIEWS_DB": "{workdir}/reviews.db"},
                  "ready_path": "/health", "ready_timeout_s": 30},
        "setup": [[sys.executable, "seed.py", "{workdir}/reviews.db", str(reviews)]],
        "database": {"url": "sqlite:///{workdir}/reviews.db", "allow_ddl": False},
        "load": {"endpoints": [{"name": "reviews", "path": "/products/{int:1:20}/reviews"}], "users": users,
                 "spawn_rate": users, "duration_s": 10, "warmup_s": 2},
        "performance_goals": ["p95_ms<=1"], "quality_metrics": ["error_rate<=0.01"],
        "llm": {"base_url": llm_url, "api_key_env": "PERFAGENTS_BENCH_NO_KEY", "max_context_tokens": MAX_CONTEXT_TOKENS,
                "models": [{"name": "small-model", "usd_per_1m_input": 0.25, "usd_per_1m_output": 2.0},
                           {"name": "large-model", "usd_per_1m_input": 3.0, "usd_per_1m_output": 15.0}]},
        "code": {"source_dir": "src", "allow_changes": True},
    }


def run(folder: Path, out: str) -> tuple[dict[str, Any] | None, str]:
    proc = subprocess.run([str(PERFAGENTS), "run", str(folder / "target.yaml"), "--scope", "quick-win", "--quiet",
                           "--store", str(folder / "store.duckdb"), "--json", str(folder / out)],
                          cwd=folder, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    result = json.loads((folder / out).read_text()) if (folder / out).exists() else None
    return result, "" if proc.returncode == 0 else f"rc {proc.returncode}: {proc.stderr.strip()[-300:]}"


def patch_of(result: dict[str, Any] | None) -> dict[str, Any]:
    patches = [c for c in (result or {}).get("changes", []) if c.get("kind") == "code_patch"]
    if not patches:
        return {"status": None}
    change = patches[0]
    effect = change.get("effect") or {}
    tail = effect.get("tail") or {}
    return {"status": change.get("status"), "metric": effect.get("metric"), "ratio": effect.get("ratio"),
            "ci95": effect.get("ci95"), "regime": effect.get("regime"), "windows": effect.get("windows"),
            "p95_ratio": tail.get("ratio"), "p95_ci95": tail.get("ci95")}


def variant(name: str, replay: Any, folder: Path) -> dict[str, Any]:
    server, reviews, users = VARIANTS[name]
    src = folder / "src"
    work_tree(src)
    llm = replay.ReplayServer([fix_answer(src), NO_PATCH]).start()
    started = time.monotonic()
    try:
        (folder / "target.yaml").write_text(yaml.safe_dump(spec_for(name, server, reviews, users, llm.url)))
        first, error = run(folder, "first.json")
        reported = llm.prompt_tokens_reported
        prompts = [llm.count_messages(r["body"]["messages"]) for r in llm.requests]  # answered or not
        calls = len(llm.requests)
        work_tree(src)  # a fresh copy of the same source; the same store
        second, error2 = run(folder, "second.json")
        second_calls = len(llm.requests) - calls
    finally:
        llm.stop()
    usage = (first or {}).get("llm") or {}
    asked = [[q.get("location"), q.get("result"), [t.get("model") for t in q.get("tries", [])]]
             for q in usage.get("questions", [])]
    return {"variant": name, "server": server, "reviews_per_product": reviews, "users": users,
            "status": (first or {}).get("status"), "patch": patch_of(first), "error": error or None,
            "questions": asked, "tokens_in": usage.get("tokens_in"), "server_prompt_tokens": reported,
            "largest_prompt": max(prompts, default=0), "max_context_tokens": MAX_CONTEXT_TOKENS,
            "second_run": {"model_calls": second_calls, "cache_hits": ((second or {}).get("llm") or {}).get("cache_hits"),
                           "patch": patch_of(second), "error": error2 or None},
            "wall_s": round(time.monotonic() - started)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    replay = replay_server_module()
    rows = []
    for name in args.variant or list(VARIANTS):
        with tempfile.TemporaryDirectory(prefix=f"perfagents-heldout-{name}-") as tmp:
            row = variant(name, replay, Path(tmp))
        rows.append(row)
        p, s = row["patch"], row["second_run"]
        print(f"{name}: patch {p['status']} {p['metric']} x{p['ratio']} {p['ci95']} ({p['regime']}), "
              f"p95 x{p['p95_ratio']} {p['p95_ci95']}; "
              f"tokens_in {row['tokens_in']} (server {row['server_prompt_tokens']}); largest prompt "
              f"{row['largest_prompt']} <= {MAX_CONTEXT_TOKENS}; second run: {s['model_calls']} calls, "
              f"{s['cache_hits']} cache hits, patch {s['patch']['status']} x{s['patch']['ratio']}; "
              f"{row['wall_s']} s{'; ' + row['error'] if row['error'] else ''}", flush=True)
    kept = sum(r["patch"]["status"] == "kept" for r in rows)
    summary = {"variants": len(rows), "patch_kept": kept,
               "tokens_match": sum(r["tokens_in"] == r["server_prompt_tokens"] for r in rows),
               "prompts_within_budget": sum(r["largest_prompt"] <= MAX_CONTEXT_TOKENS for r in rows),
               "second_runs_without_calls": sum(r["second_run"]["model_calls"] == 0 for r in rows)}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
