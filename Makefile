# pulse_pipeline: every command of docs/development.md "Make targets". `make help` lists them.
PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := .uv/bin/uv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: help install demo test test-fast lint validate dev bench clean

help:
	@echo "make demo      install, then sync the demo accounts (SQLite, simulated AWS)"
	@echo "make test      install, then lint, validate the definitions and run every test"
	@echo "make test-fast the quick inner loop: every test except the dagster dev / daemon modules"
	@echo "make dev       dagster dev (webserver + daemon) on the demo data, AWS simulated (PORT=3000)"
	@echo "make install   create .venv from uv.lock (uv is bootstrapped into .uv/)"
	@echo "make lint      ruff and mypy;  make validate: dagster definitions validate"
	@echo "make bench     Cost Explorer requests per design and CostRecord write throughput"
	@echo "make clean     remove .venv, .uv and the local Dagster home (demo data included)"

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --quiet

# The local instance (see dagster.local.yaml): Dagster's default SQLite storage.
$(DAGSTER_HOME)/dagster.yaml: dagster.local.yaml
	@mkdir -p "$(DAGSTER_HOME)"
	cp dagster.local.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pulse_pipeline_dev.demo

lint: install
	$(BIN)/ruff check pulse_pipeline pulse_pipeline_tests pulse_pipeline_dev
	$(BIN)/ruff format --check pulse_pipeline pulse_pipeline_tests pulse_pipeline_dev
	$(BIN)/mypy pulse_pipeline pulse_pipeline_dev

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

test: lint validate
	$(BIN)/pytest

# The modules that start `dagster dev` or the production processes take most of `make test`'s time.
SLOW_TESTS := test_webserver_and_daemon test_alerts_through_daemon test_sync_requests test_production_topology
test-fast: install
	$(BIN)/pytest $(foreach module,$(SLOW_TESTS),--ignore=pulse_pipeline_tests/$(module).py) $(PYTEST_ARGS)

PORT ?= 3000
dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m pulse_pipeline_dev.demo serve --port $(PORT)

# Requests per design and write throughput; needs the local PostgreSQL (see docs/numbers.md).
bench: install
	$(BIN)/python -m pulse_pipeline_dev.bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .uv .dagster_home .pytest_cache .ruff_cache .mypy_cache
