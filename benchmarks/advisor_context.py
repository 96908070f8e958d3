"""How many of a finding's key facts the advisor's prompt keeps within a token budget, against
plain truncation.

    .venv/bin/python benchmarks/advisor_context.py [--budgets 4000 2000 1000] [--json PATH]

Findings: the reference shop's (reference_workflows/ecommerce/recorded_findings.json: its
planted N+1 ``catalog:fetch_reviews_n_plus_one``, the small N+1 in ``orders:checkout``, the
hot ``search:edit_distance`` as a quick-win run recorded them, and a ``search:score_product``
hot function in the same shape). Source: this repository (``source_dir`` = its root).

Key facts (tasks/advisor/facts.py ``key_facts``): the file, the function, its ``def`` line,
the source lines the evidence points at, the statement, and the numbers that size the problem.
A fact is kept when its text is in the prompt (numbers match however they are written: 50 is
50.0, 2.387 is 2.3872).

Three prompts per finding and budget, each counted with cl100k_base over the chat messages
and never over the budget:

- ``advisor``: tasks/advisor/context.py (ranked pieces, compressed, fitted);
- ``trunc(pieces)``: the same pieces at full detail, in prompt order, cut at the budget;
- ``trunc(files)``: the finding as JSON, then every file the pieces come from, whole, cut at
  the budget (what "paste the finding and the files" sends).

Prints one row per budget: facts kept (share), the mean prompt tokens, and in how many prompts
the located function is whole (all its exact lines: what a patch's context lines need).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tasks.advisor.context import INSTRUCTIONS, build_context, collect_pieces, render  # noqa: E402
from tasks.advisor.facts import key_facts  # noqa: E402
from tasks.advisor.source import load_function  # noqa: E402
from tasks.advisor.tokens import count_messages, truncate_tokens  # noqa: E402
from tasks.findings import Finding  # noqa: E402

FINDINGS = REPO / "reference_workflows" / "ecommerce" / "recorded_findings.json"
BUDGETS = (4000, 2000, 1000)


def truncated(user: str, budget: int) -> list[dict[str, str]]:
    """System + user messages with the user text cut so the whole fits ``budget``."""
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user}]
    free = budget - count_messages([messages[0], {"role": "user", "content": ""}])
    messages[1]["content"] = truncate_tokens(user, max(free, 0))
    while count_messages(messages) > budget and messages[1]["content"]:
        messages[1]["content"] = messages[1]["content"][:-1]
    return messages


def prompts(finding: Finding, budget: int) -> dict[str, list[dict[str, str]]]:
    located = load_function(finding.location, REPO)
    ctx = build_context(finding, REPO, budget)
    pieces = collect_pieces([finding], located, REPO)
    full = render(pieces, {p.key: 0 for p in pieces})[1]["content"]
    files = dict.fromkeys(p.function.path for p in pieces if p.function is not None)
    raw = json.dumps(finding.to_dict(), indent=1) + "".join(
        f"\n\n# {path}\n{(REPO / path).read_text()}" for path in files)
    return {"advisor": ctx.messages, "trunc(pieces)": truncated(full, budget), "trunc(files)": truncated(raw, budget)}


def measure(findings: list[Finding], budgets: list[int]) -> list[dict[str, Any]]:
    rows = []
    for budget in budgets:
        row: dict[str, Any] = {"budget": budget, "facts": 0}
        for finding in findings:
            located = load_function(finding.location, REPO)
            facts = key_facts(finding, located)
            row["facts"] += len(facts)
            for method, messages in prompts(finding, budget).items():
                tokens = count_messages(messages)
                assert tokens <= budget, (method, tokens, budget)
                text = "\n".join(m["content"] for m in messages)
                kept = sum(f.found_in(text) for f in facts)
                cell = row.setdefault(method, {"kept": 0, "tokens": 0, "whole": 0, "missed": []})
                cell["kept"] += kept
                cell["whole"] += located is not None and located.text in text
                cell["tokens"] += tokens / len(findings)
                cell["missed"] += [f"{finding.location.rsplit(':', 1)[-1]}:{f.name}" for f in facts
                                   if not f.found_in(text)]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    findings = [Finding(**f) for f in json.loads(FINDINGS.read_text())["findings"]]
    rows = measure(findings, args.budgets)
    methods = ("advisor", "trunc(pieces)", "trunc(files)")
    print(f"{len(findings)} findings, {rows[0]['facts']} key facts. Per method: facts kept (share), mean prompt "
          f"tokens, and in how many prompts the located function is whole (every exact line, as a patch needs)\n")
    print("| budget | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for row in rows:
        cells = [f"{row[m]['kept']}/{row['facts']} ({row[m]['kept'] / row['facts']:.0%}), {row[m]['tokens']:.0f} tok, "
                 f"whole {row[m]['whole']}/{len(findings)}" for m in methods]
        print(f"| {row['budget']} | " + " | ".join(cells) + " |")
    for row in rows:
        missed = row["advisor"]["missed"]
        if missed:
            print(f"advisor at {row['budget']} missed: {', '.join(missed)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
