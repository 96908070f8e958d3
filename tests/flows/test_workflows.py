"""The dispatch table: a reference target's spec runs its reference workflow, any other optimize-target."""

from __future__ import annotations

from flows.ecommerce import ecommerce_optimization
from flows.enterprise_api import enterprise_api_optimization
from flows.optimize import optimize_target
from flows.workflows import flow_for
from tasks.request import RunRequest


def test_each_target_runs_its_workflow() -> None:
    plain, with_db = RunRequest(), RunRequest(database_url="postgresql://postgres@127.0.0.1:5432/api")
    assert flow_for("ecommerce", plain) is ecommerce_optimization
    assert flow_for("enterprise-api", plain) is enterprise_api_optimization
    assert flow_for("enterprise-api", with_db) is enterprise_api_optimization
    assert flow_for("ecommerce", with_db) is optimize_target  # the shop runs on its own SQLite file only
    assert flow_for("shop", plain) is optimize_target
