# perfagents: the two commands are `make run` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_HOME ?= $(CURDIR)/.perfagents/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: install system-deps run test test-fast lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Chromium (frontend agent) and HypoPG (PostgreSQL what-if indexes) come from apt.
system-deps:
	./scripts/install-system-deps

# The main job: the e-commerce reference workflow with embedded defaults
# (SQLite target, DuckDB store in .perfagents/, no Prefect server needed).
run: install
	$(BIN)/perfagents run ecommerce --json .perfagents/ecommerce-result.json

# Two sessions, both always run; any nonzero exit fails the target (5, no tests collected,
# included). The unit and integration tests on 2 xdist workers, whole modules per worker (their
# module-scoped apps and clusters start once). Then, one at a time, the end-to-end runs and
# deployments (two at once on 2 cores starved the load generators, the gate's "too few samples",
# and slowed the heavy runs: enterprise-api on PostgreSQL 81 s alone, 164 s beside another) and
# the Chromium tests (beside another worker a browser missed test_frontend's 1 s stop).
SERIAL := e2e or deploy or chromium
PYTEST := $(BIN)/pytest -q --timeout=600 --durations=15
# The parallel part's tests disturb each other's windows by design, so the gate's outside-load
# rule is loosened there (its own unit test checks it); the serial part keeps the default.
test: install system-deps lint
	rc=0; \
	PERFAGENTS_MAX_FOREIGN_CORES=2 $(PYTEST) -n 2 --dist loadfile -m "not ($(SERIAL))" || rc=$$?; \
	$(PYTEST) -m "$(SERIAL)" || rc=$$?; \
	exit $$rc

test-fast: install
	$(BIN)/pytest -q -m "not e2e and not deploy"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .perfagents
