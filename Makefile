# The two commands of the README are `make demo` and `make test`; each installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
CHROMIUM := /usr/bin/chromium

# The project's own Dagster instance (git-ignored): runs of `make demo` show up in `make ui`.
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
export DBT_SEND_ANONYMOUS_USAGE_STATS := False

.PHONY: install demo test test-fast lint lint-sql ui sandbox lock clean bench services

install: $(VENV)/.installed

# uv installs the locked set in seconds; plain pip is the fallback if uv cannot be fetched.
# Bytecode is compiled at install (pip does so by default, uv only when asked): where Python may not
# write .pyc files itself (PYTHONDONTWRITEBYTECODE, a read-only venv) every process that loads the
# definitions would otherwise compile Dagster's sources anew, twice the CPU of loading them.
$(VENV)/.installed: requirements.lock pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	@if $(BIN)/pip install --quiet uv==$(UV_VERSION); then \
		$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements.lock && \
		$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e . ; \
	else \
		$(BIN)/pip install --quiet -r requirements.lock && \
		$(BIN)/pip install --quiet --no-deps -e . ; \
	fi
	touch $@

demo: install
	$(BIN)/fleet-pipeline demo

# Test files are spread over two worker processes (a file stays on one worker: its fixtures are shared).
# The UI test drives Debian's chromium (Playwright's own browser download is not reachable); the
# distributed mode's tests start Postgres and Redis (`services`).
# PYTEST_ARGS adds options, e.g. PYTEST_ARGS="--durations=20" or a path.
PYTEST := $(BIN)/pytest -n $(or $(TEST_WORKERS),2) --dist loadfile
test: install lint $(CHROMIUM) services
	$(PYTEST) $(PYTEST_ARGS)

# The quick loop while editing: every test but those marked slow (dbt, Dagster runs in subprocesses,
# the browser, the fault matrix; fleet_pipeline_tests/conftest.py lists them). No lint, no browser.
test-fast: install
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# ruff for the Python, then the SQL linter where the project defines `lint-sql` and sqlfluff is installed.
lint: install
	$(BIN)/ruff check .
	@if $(MAKE) -n lint-sql >/dev/null 2>&1 && [ -x $(BIN)/sqlfluff ]; then \
		$(MAKE) --no-print-directory lint-sql; \
	else \
		echo "lint: no lint-sql target or no sqlfluff installed, SQL not linted"; \
	fi

# The dbt models and macros against dbt_models/.sqlfluff (dialect duckdb, jinja with dbt's builtins).
lint-sql: install
	$(BIN)/sqlfluff lint dbt_models/models dbt_models/macros

# PostgreSQL and Redis for the distributed mode (docs/distributed.md): Debian's packages, installed
# only where their binaries are missing. Nothing is started here: `fleet-pipeline cluster up` and
# the tests start servers on loopback themselves (fleet_pipeline/services.py), and fail asking for
# this target when the binaries are not there. Debian keeps the Postgres server binaries in /usr/lib/postgresql/<N>/bin.
services:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null; then \
		echo "services: postgresql and redis-server already installed"; \
	else \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql redis-server; \
	fi

$(CHROMIUM):
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

ui: install
	$(BIN)/fleet-pipeline ui

sandbox: install
	$(BIN)/fleet-pipeline sandbox serve --vendor $(or $(VENDOR),tracksolid)

# Issue 7's benchmark (minutes, not part of the tests): BENCH_ARGS="--devices 10000 --latency-ms 0" etc.
# Issue 17's peer comparison (the CLI-launched run, one process, dlt, the bare insert):
# BENCH_ARGS="peer --devices 200 --latency-ms 0". Issue 19's push receiver load test (docs/push.md):
# BENCH_ARGS="push --seconds 60 --rate 1000 --batch-size 50" (add --kill-at 20 for the SIGKILL run). Only the benchmark installs the bench extra (dlt),
# from its own lock whose shared pins are requirements.lock's.
bench: install $(VENV)/.bench-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

$(VENV)/.bench-installed: requirements-bench.lock $(VENV)/.installed
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -r requirements-bench.lock
	touch $@

# Re-resolve the lock after changing pyproject.toml's dependencies.
lock: install
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra test pyproject.toml -o requirements.lock
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra test --extra bench -c requirements.lock \
		pyproject.toml -o requirements-bench.lock

clean:
	rm -rf data $(VENV)
