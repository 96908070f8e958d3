# perfagents: the two commands are `make run` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PREFECT_HOME ?= $(CURDIR)/.perfagents/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180

.PHONY: install system-deps run test test-all lint bench clean

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
# system-deps: Chromium for the frontend agent (from apt where it can; otherwise one line says
# what is missing and the run goes on without page loads).
run: install system-deps
	$(BIN)/perfagents run ecommerce --json .perfagents/ecommerce-result.json

# Which tests: `make test` runs every unit, integration and conformance test and the end-to-end
# tests marked `smoke` (the loop through the CLI reverting a harmful knob; one stack of the
# conformance matrix): under 8 minutes here. The other end-to-end runs (marked e2e or deploy: the
# shop and enterprise runs, the advisor's six, memoization, kill-and-revert, deployments through
# a process worker ...) take another ~11 minutes of load windows; they run when CI is set
# (.ci/run runs `make test` with CI=true) and in `make test-all`.
ifeq ($(filter true 1 yes,$(CI)),)
SELECT := and (not (e2e or deploy) or smoke)
else
SELECT :=
endif
# Two sessions, both always run; any nonzero exit fails the target (5, no tests collected,
# included). First, on 2 xdist workers (whole modules per worker, so their module-scoped apps and
# clusters start once, but each e2e test on its own, the longest first: tests/conftest.py), the
# unit and integration tests and the end-to-end runs whose assertions
# hold beside other work (reverts for errors or stale data, budgets, journaling, memoization of
# a 5 ms cache, deployments): these disturb each other's windows by design, so the gate's
# outside-load rule is loosened there (its own unit test checks it). Then, one at a time with the
# default rule, the runs whose assertions rest on profiles and findings (marked `alone`: two at
# once on 2 cores starved the load generators and slowed enterprise-api on PostgreSQL from 81 s
# to 164 s) and the Chromium tests (beside another worker a browser missed a 1 s stop).
SERIAL := alone or chromium
PYTEST := $(BIN)/pytest -q --timeout=600 --durations=40
test: install system-deps lint
	rc=0; \
	PERFAGENTS_MAX_FOREIGN_CORES=2 $(PYTEST) -n 2 --dist loadgroup --no-loadscope-reorder -m "not ($(SERIAL)) $(SELECT)" || rc=$$?; \
	$(PYTEST) -m "($(SERIAL)) $(SELECT)" || rc=$$?; \
	exit $$rc

test-all:
	$(MAKE) test CI=true

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .perfagents
