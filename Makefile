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

test: install system-deps
	$(BIN)/pytest -q --timeout=600 --durations=15

test-fast: install
	$(BIN)/pytest -q -m "not e2e and not deploy"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf .perfagents
