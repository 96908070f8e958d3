"""The frontend agent: each ``frontend.pages`` URL loaded in headless Chromium, and what slows it.

    agent.py        FrontendAgent, the plug-in: page loads, timings and resources (Playwright)
    findings.py     uncompressed_response, no_cache_headers, render_blocking, large_payload
    lighthouse.py   Lighthouse's performance audits, when a ``lighthouse`` binary is found
"""

from __future__ import annotations

from tasks.agents.frontend.agent import FrontendAgent, find_chromium

__all__ = ["FrontendAgent", "find_chromium"]
