"""Profiling agents, one per layer; each a plug-in (base.py's ``Agent`` protocol) in registry.py.

    base.py          the plug-in contract (Agent, AgentContext) and the registry class
    registry.py      the built-in agents, registered explicitly; what a target starts with for them
    database/        SQL cost and the indexes that help (SQLite and PostgreSQL)
    application/     processes, CPU profile, complexity, payloads
    frontend/        page loads in headless Chromium
    tracing.py       per-request breakdowns from the target's OpenTelemetry spans
    compression.py   response compression, as the application and frontend agents judge it
"""
