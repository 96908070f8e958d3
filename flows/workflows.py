"""Which flow runs a target: a reference target's spec runs its reference workflow, any other spec
the generic closed loop (`optimize-target`). Importing this module imports Prefect."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import Flow

from flows.ecommerce import ecommerce_optimization
from flows.enterprise_api import enterprise_api_optimization
from flows.optimize import optimize_target
from tasks.request import RunRequest
from tasks.result import RunResult


@dataclass(frozen=True)
class Workflow:
    flow: Flow[[RunRequest], RunResult]
    # may the user replace the target's database (--db)? The e-commerce shop runs on its own
    # SQLite file only: with another database its spec runs under optimize-target
    replaceable_database: bool


WORKFLOWS: dict[str, Workflow] = {  # the spec's name -> its reference workflow
    "ecommerce": Workflow(ecommerce_optimization, replaceable_database=False),
    "enterprise-api": Workflow(enterprise_api_optimization, replaceable_database=True),
}


def flow_for(spec_name: str, request: RunRequest) -> Flow[[RunRequest], RunResult]:
    workflow = WORKFLOWS.get(spec_name)
    if workflow is None or (request.database_url is not None and not workflow.replaceable_database):
        return optimize_target
    return workflow.flow
