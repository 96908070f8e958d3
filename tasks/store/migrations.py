"""The store's schema as numbered migrations: each runs once, atomically with its
schema_migrations row (``Connection.migrate``). Append new ones; never edit an applied one.

The tables are documented for users in docs/store.md.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
        CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY, target VARCHAR NOT NULL, scope VARCHAR, flow VARCHAR,
            spec JSON, goals JSON, quality JSON, budget JSON, code_version VARCHAR,
            started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ, status VARCHAR, result JSON);
        CREATE TABLE windows (
            window_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, label VARCHAR NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1, config JSON, change_id VARCHAR,
            started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ, duration_s DOUBLE, warmup_s DOUBLE,
            users INTEGER, loadgen_cpu_pct DOUBLE, valid BOOLEAN, reason VARCHAR);
        CREATE TABLE samples (
            window_id VARCHAR NOT NULL, ts DOUBLE NOT NULL, endpoint VARCHAR NOT NULL,
            method VARCHAR, latency_ms DOUBLE, status INTEGER, bytes BIGINT, error VARCHAR);
        CREATE TABLE endpoint_stats (
            window_id VARCHAR NOT NULL, endpoint VARCHAR NOT NULL, requests BIGINT, rps DOUBLE,
            mean_ms DOUBLE, p50_ms DOUBLE, p95_ms DOUBLE, p99_ms DOUBLE, error_rate DOUBLE,
            bytes_mean DOUBLE);
        CREATE TABLE resources (
            window_id VARCHAR NOT NULL, ts DOUBLE NOT NULL, role VARCHAR NOT NULL, pids INTEGER,
            cpu_pct DOUBLE, rss_bytes BIGINT, threads INTEGER, ctx_switches BIGINT, open_files INTEGER);
        CREATE TABLE spans (
            window_id VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_id VARCHAR, name VARCHAR,
            kind VARCHAR, start_ts DOUBLE, duration_ms DOUBLE, attributes JSON);
        CREATE TABLE findings (
            run_id VARCHAR NOT NULL, window_id VARCHAR, agent VARCHAR NOT NULL, kind VARCHAR NOT NULL,
            location VARCHAR, endpoint VARCHAR, severity VARCHAR, evidence JSON,
            estimated_gain JSON, candidate JSON);
        CREATE TABLE agent_runs (
            window_id VARCHAR NOT NULL, agent VARCHAR NOT NULL, status VARCHAR NOT NULL,
            error VARCHAR, duration_s DOUBLE, observed JSON);
        CREATE TABLE changes (
            change_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, target VARCHAR NOT NULL,
            seq INTEGER, kind VARCHAR NOT NULL, params JSON, description VARCHAR, risk VARCHAR,
            status VARCHAR NOT NULL, reason VARCHAR, effect JSON, undo JSON,
            planned_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
        CREATE TABLE validations (
            window_id VARCHAR NOT NULL, expectation VARCHAR NOT NULL, success BOOLEAN,
            observed JSON, checked_at TIMESTAMPTZ);
        CREATE TABLE costs (
            run_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, amount DOUBLE, unit VARCHAR,
            note VARCHAR, ts TIMESTAMPTZ);
        CREATE TABLE target_state (
            target VARCHAR PRIMARY KEY, config JSON, kept_changes JSON, run_id VARCHAR,
            code_version VARCHAR, updated_at TIMESTAMPTZ);
        """,
    ),
    (
        2,
        "llm answer cache",
        """
        CREATE TABLE llm_answers (
            cache_key VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, location VARCHAR NOT NULL,
            source_hash VARCHAR NOT NULL, model VARCHAR NOT NULL, prompt_version VARCHAR NOT NULL,
            answer VARCHAR NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, outcome VARCHAR,
            created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ);
        """,
    ),
    (
        3,
        "run signatures",
        """
        CREATE TABLE signatures (
            run_id VARCHAR NOT NULL, target VARCHAR NOT NULL, load_shape VARCHAR NOT NULL,
            endpoint VARCHAR NOT NULL, windows INTEGER NOT NULL, requests BIGINT,
            p50_ms DOUBLE, p95_ms DOUBLE, p99_ms DOUBLE, rps DOUBLE, error_rate DOUBLE,
            db_time_share DOUBLE, cpu_ms_per_request DOUBLE, bytes_per_response DOUBLE,
            window_ids JSON, created_at TIMESTAMPTZ, PRIMARY KEY (run_id, endpoint));
        """,
    ),
    (
        4,
        "change estimates",
        # IF NOT EXISTS: a store that gained this table under another number upgrades cleanly
        """
        CREATE TABLE IF NOT EXISTS change_estimates (
            change_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, target VARCHAR NOT NULL,
            change_kind VARCHAR NOT NULL, basis VARCHAR NOT NULL, agent VARCHAR, location VARCHAR,
            endpoint VARCHAR, risk VARCHAR, expected_gain DOUBLE, calibrated_gain DOUBLE, calibration JSON,
            whatif_ratio DOUBLE, cost_before DOUBLE, cost_after DOUBLE, share DOUBLE,
            estimated_gain JSON, evidence JSON, estimated_at TIMESTAMPTZ,
            outcome VARCHAR, metric VARCHAR, measured_endpoint VARCHAR, measured_ratio DOUBLE,
            measured_lo DOUBLE, measured_hi DOUBLE, windows INTEGER, measured_at TIMESTAMPTZ);
        """,
    ),
    (
        5,
        "live window progress",
        """
        CREATE TABLE IF NOT EXISTS live_windows (
            run_id VARCHAR NOT NULL, label VARCHAR NOT NULL, attempt INTEGER, started_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ, planned_s DOUBLE, elapsed_s DOUBLE, requests BIGINT, errors BIGINT,
            p50_ms DOUBLE, p95_ms DOUBLE, rps DOUBLE, done BOOLEAN);
        """,
    ),
    (
        6,
        "geometric-mean latency",
        # computed for the windows and signatures already stored, from the samples they keep
        """
        ALTER TABLE endpoint_stats ADD COLUMN IF NOT EXISTS gmean_ms DOUBLE;
        UPDATE endpoint_stats e SET gmean_ms = g.gm FROM (
            SELECT window_id, endpoint, round(exp(avg(ln(greatest(latency_ms, 0.001)))), 3) AS gm
            FROM samples WHERE latency_ms IS NOT NULL GROUP BY window_id, endpoint
            UNION ALL
            SELECT window_id, '__total__', round(exp(avg(ln(greatest(latency_ms, 0.001)))), 3)
            FROM samples WHERE latency_ms IS NOT NULL GROUP BY window_id) g
        WHERE e.window_id = g.window_id AND e.endpoint = g.endpoint;
        ALTER TABLE signatures ADD COLUMN IF NOT EXISTS gmean_ms DOUBLE;
        UPDATE signatures s SET gmean_ms = (
            SELECT exp(avg(ln(greatest(e.gmean_ms, 1e-9)))) FROM endpoint_stats e
            WHERE list_contains(CAST(s.window_ids AS VARCHAR[]), e.window_id) AND e.endpoint = s.endpoint);
        """,
    ),
]
