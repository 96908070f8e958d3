"""Naming a request's statements: a Locust name whose words name one route template."""

from __future__ import annotations

from tasks.agents.database.sql.attribution import named_like

TEMPLATES = ["/api/invoices", "/api/reports/revenue", "/api/accounts/{account_id:int}", "/api/export", "/health"]


def test_names_map_to_the_one_template_their_words_name() -> None:
    names = ["revenue_report", "invoices_page", "invoices_deep", "create_invoice", "account", "export", "checkout"]
    assert named_like(names, TEMPLATES) == {
        "revenue_report": "/api/reports/revenue", "invoices_page": "/api/invoices", "invoices_deep": "/api/invoices",
        "create_invoice": "/api/invoices", "account": "/api/accounts/{account_id:int}", "export": "/api/export",
    }  # checkout names no template: left to the timing votes


def test_a_tie_or_noise_words_decide_nothing() -> None:
    assert named_like(["invoice_report"], ["/api/invoices", "/api/reports"]) == {}  # one word each: a tie
    assert named_like(["api_get"], TEMPLATES) == {}  # only noise words
