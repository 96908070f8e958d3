"""How right the agents' diagnosis is: precision and recall over every planted problem.

    .venv/bin/python benchmarks/diagnosis.py [--json PATH] [--only NAME ...] [--no-postgres]

Targets: every stack of the conformance matrix (tests/conformance/matrix.py: one app with a
planted missing index and a planted N+1 under six stacks, datasette with a planted missing
index) and both reference targets (the e-commerce shop: reference_workflows/ecommerce/
expected_findings.yaml; the enterprise API on its embedded SQLite default:
reference_workflows/enterprise_api/expected_findings.yaml). Each is set up and started as a
run starts it (capture injected) and profiled with every agent that applies: the matrix's
stacks in one window, the reference targets in two (as a run's baseline is profiled: the
second window's findings pool both windows' evidence); the findings are ranked as a run ranks
them.

A planted problem is *found* when a finding names it at its location (and endpoint, where the
expectation gives one). A finding is *true* when it matches a planted problem or an
``also_true`` observation of one, else *false*. recall = planted found / planted;
precision = true findings / findings; ``false_above`` counts the false findings ranked above
the first planted one of their target. Prints a table and
``{"planted", "found", "false_above", "precision", "recall"}`` (with ``--json PATH`` also
written there, with the per-target rows).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "conformance"))

import matrix  # noqa: E402  (tests/conformance/matrix.py)

from tasks.store import Store  # noqa: E402

REFERENCES = {
    "ecommerce (reference)": (REPO / "reference_workflows/ecommerce/target.yaml",
                              REPO / "reference_workflows/ecommerce/expected_findings.yaml"),
    "enterprise-api (reference)": (REPO / "reference_workflows/enterprise_api/target.yaml",
                                   REPO / "reference_workflows/enterprise_api/expected_findings.yaml"),
}
PROFILE_WINDOWS = ("profile-1", "profile-2")  # tasks/loop.py profiles a baseline twice when the budget allows
RECALL_GOAL = 0.9
PRECISION_GOAL = 0.9


def profile_reference(spec_path: Path, workdir: Path, store: Store) -> list[dict[str, Any]]:
    """One profiling window of a reference target with every agent, its findings ranked."""
    from tasks import window as window_mod
    from tasks.agents.registry import agents_for, capture_env_for
    from tasks.budget import Budget, Ledger
    from tasks.changes.runtime import Runtime
    from tasks.results.report import ranked_findings
    from tasks.spec import load_spec
    from tasks.target import database_url, run_setup, start_target, stop_target

    spec = load_spec(str(spec_path))
    agents = agents_for(spec, only=["database", "application", "frontend"])
    env = capture_env_for(agents, workdir)
    run_setup(spec, workdir)
    handle = start_target(spec, workdir, spec.default_config(), extra_env=env)
    try:
        rt = Runtime(spec, workdir, handle, spec.default_config(), database_url(spec, workdir, handle.port), env)
        for label in PROFILE_WINDOWS:  # as a run profiles: the second window's agents pool both windows' evidence
            window = window_mod.measure_window(store, "diagnosis", rt, label, agents=agents,
                                               ledger=Ledger(Budget()), max_attempts=2)
    finally:
        stop_target(handle)
    return [_as_dict(f) for f in ranked_findings(window.findings)]


def _as_dict(f: Any) -> dict[str, Any]:
    return {"kind": f.kind, "location": f.location, "endpoint": f.endpoint, "severity": f.severity}


def score(name: str, findings: list[dict[str, Any]], planted: list[dict[str, str]],
          also_true: list[dict[str, str]]) -> dict[str, Any]:
    found, missing = {}, []
    for rule in planted:
        rank = next((i for i, f in enumerate(findings) if _matches(rule, f)), None)
        (missing.append(rule["id"]) if rank is None else found.__setitem__(rule["id"], rank))
    true = [i for i, f in enumerate(findings) if any(_matches(r, f, endpoint=False) for r in [*planted, *also_true])]
    false = [(i, f) for i, f in enumerate(findings) if i not in set(true)]
    first = min(found.values(), default=len(findings))
    return {"target": name, "planted": len(planted), "found": len(found), "missing": missing,
            "findings": len(findings), "true": len(true), "false": [f"{f['kind']} at {f['location']}" for _, f in false],
            "false_above": sum(1 for i, _ in false if i < first)}


def _matches(rule: dict[str, str], finding: dict[str, Any], *, endpoint: bool = True) -> bool:
    import re

    if finding["kind"] != rule["kind"] or not re.fullmatch(rule["location"], str(finding["location"])):
        return False
    return not endpoint or "endpoint" not in rule or bool(re.fullmatch(rule["endpoint"], str(finding.get("endpoint"))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="targets whose name contains one of these")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL stack")
    args = parser.parse_args()
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    pg_folder, pg_dsn = None, None
    with tempfile.TemporaryDirectory(prefix="perfagents-diagnosis-") as tmp:
        folder = Path(tmp)
        store = Store(folder / "store.duckdb")
        try:
            for n, stack in enumerate(matrix.STACKS):
                if (args.only and not any(o in stack.name for o in args.only)) or (stack.postgres and args.no_postgres):
                    continue
                if stack.postgres and pg_dsn is None:
                    pg_folder, pg_dsn = _start_postgres()
                window = matrix.profile_stack(stack, folder / f"stack-{n}", store, pg_dsn)
                findings = [_as_dict(f) for f in window.findings]
                rows.append(score(stack.name, findings, stack.planted, matrix.ALSO_TRUE))
                _print_row(rows[-1])
            for name, (spec_path, expected_path) in REFERENCES.items():
                if args.only and not any(o in name for o in args.only):
                    continue
                expected = yaml.safe_load(expected_path.read_text())
                findings = profile_reference(spec_path, folder / name.split()[0], store)
                rows.append(score(name, findings, expected["planted"], expected.get("also_true", [])))
                _print_row(rows[-1])
        finally:
            store.close()
            if pg_folder is not None:
                from reference_workflows.enterprise_api.pgcluster import stop_cluster

                stop_cluster(pg_folder)
    planted = sum(r["planted"] for r in rows)
    found = sum(r["found"] for r in rows)
    total = sum(r["findings"] for r in rows)
    summary = {"planted": planted, "found": found, "false_above": sum(r["false_above"] for r in rows),
               "precision": round(sum(r["true"] for r in rows) / total, 3) if total else None,
               "recall": round(found / planted, 3) if planted else None}
    print(f"\n{len(rows)} targets in {time.monotonic() - started:.0f} s: recall {summary['recall']} (goal >= "
          f"{RECALL_GOAL}), precision {summary['precision']} (goal >= {PRECISION_GOAL}), "
          f"false findings above a planted one: {summary['false_above']} (goal 0)")
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({**summary, "targets": rows}, indent=2))
    return 0


def _start_postgres() -> tuple[Path, str]:
    import os

    from reference_workflows.enterprise_api.launch import free_port
    from reference_workflows.enterprise_api.pgcluster import pg_available, start_cluster

    if not pg_available():
        raise SystemExit("PostgreSQL 15 binaries not installed: run with --no-postgres")
    folder = Path(tempfile.mkdtemp(prefix="perfagents-pg-", dir="/tmp"))
    os.chmod(folder, 0o777)
    return folder, start_cluster(folder, free_port())


def _print_row(row: dict[str, Any]) -> None:
    print(f"{row['target']:36s} planted {row['found']}/{row['planted']}  findings {row['findings']:2d} "
          f"(true {row['true']})  false above the first planted: {row['false_above']}"
          + (f"  missing: {row['missing']}" if row["missing"] else "")
          + (f"  false: {row['false']}" if row["false"] else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
