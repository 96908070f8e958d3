"""Check a run's findings against the shop's planted bottlenecks (expected_findings.yaml).

    python -m reference_workflows.ecommerce.check_findings result.json

Prints each planted bottleneck with the rank of the finding that names it, every false finding
(matching neither list) with its rank, and exits 1 when a planted one is missing or a false
finding ranks above the lowest-ranked planted one. ``findings`` in the result are in rank order
(tasks.results.report.ranked_findings).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPECTED = Path(__file__).with_name("expected_findings.yaml")


@dataclass
class Check:
    found: dict[str, int] = field(default_factory=dict)  # planted id -> rank (0 = first)
    missing: list[str] = field(default_factory=list)
    false: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (rank, finding)

    @property
    def false_above(self) -> list[tuple[int, dict[str, Any]]]:
        last = max(self.found.values(), default=-1)
        return [(rank, f) for rank, f in self.false if rank < last]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.false_above


def _matches(rule: dict[str, str], finding: dict[str, Any]) -> bool:
    if finding.get("kind") != rule["kind"] or not re.fullmatch(rule["location"], str(finding.get("location"))):
        return False
    return "endpoint" not in rule or bool(re.fullmatch(rule["endpoint"], str(finding.get("endpoint"))))


def check_findings(findings: list[dict[str, Any]], expected: dict[str, Any] | None = None) -> Check:
    """Which planted bottlenecks the ranked findings name, and which findings are false."""
    expected = expected or yaml.safe_load(EXPECTED.read_text())
    out = Check()
    for rule in expected["planted"]:
        rank = next((i for i, f in enumerate(findings) if _matches(rule, f)), None)
        if rank is None:
            out.missing.append(rule["id"])
        else:
            out.found[rule["id"]] = rank
    for i, f in enumerate(findings):
        if not any(_matches(rule, f) for rule in [*expected["planted"], *expected["also_true"]]):
            out.false.append((i, f))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a run's --json result")
    args = parser.parse_args(argv)
    try:
        findings = json.loads(args.result.read_text())["findings"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"check_findings: cannot read findings from {args.result}: {exc}", file=sys.stderr)
        return 2
    check = check_findings(findings)
    for planted, rank in sorted(check.found.items(), key=lambda kv: kv[1]):
        f = findings[rank]
        print(f"found    #{rank + 1:<3} {planted}: {f['kind']} at {f['location']} ({f['severity']})")
    for planted in check.missing:
        print(f"MISSING       {planted}")
    for rank, f in check.false:
        where = "ABOVE a planted one" if (rank, f) in check.false_above else "below every planted one"
        print(f"false    #{rank + 1:<3} {f['kind']} at {f['location']} ({f['severity']}): {where}")
    print(f"{len(check.found)} of {len(check.found) + len(check.missing)} planted found; "
          f"{len(check.false_above)} false finding(s) ranked above a planted one")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
