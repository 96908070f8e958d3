"""Profiling agents: one module per layer (database, application, frontend); see base.py."""
