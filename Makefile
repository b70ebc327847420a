# One command to try it (make demo), one to test it (make test). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/var/dagster
DEV_HOST ?= 127.0.0.1
DEV_PORT ?= 3000

.PHONY: demo test test-fast slow-tests lint format dev api bench clean

$(BIN)/bulkops: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bulkops needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	cp pipelines/dagster.local.yaml $@

## set up, migrate the embedded SQLite record store and import samples/applications.csv as a Dagster run
demo: $(BIN)/bulkops $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bulkops demo

## set up and run the whole test suite (SQLite and the real PostgreSQL server)
test: $(BIN)/bulkops
	$(BIN)/pytest -n 2 --dist loadgroup

## the edit loop: every test not marked slow (under a minute)
test-fast: $(BIN)/bulkops
	$(BIN)/pytest -n 2 --dist loadgroup -m "not slow" -q

## run the whole suite and rewrite tests/slow_tests.txt: the tests that took 0.5 s or more are the slow tier
slow-tests: $(BIN)/bulkops
	$(BIN)/pytest -n 2 --dist loadgroup -q --record-slow

## what CI checks besides the tests: lint and formatting (both run, either failing fails)
lint: $(BIN)/bulkops
	$(BIN)/ruff check .; status=$$?; $(BIN)/ruff format --check . && exit $$status

## fix what ruff can fix and format the tree
format: $(BIN)/bulkops
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## the Dagster UI on http://127.0.0.1:3000 (webserver + daemon for sensors and schedules); Ctrl-C stops it all
# exec: make's shell gives way to the launcher, which stops the whole dagster dev process group
dev: $(BIN)/bulkops $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bulkops db upgrade
	exec $(BIN)/python -m pipelines.devserver -- -w workspace.yaml -h $(DEV_HOST) -p $(DEV_PORT)

## the bulk-job HTTP API on http://127.0.0.1:8000
api: $(BIN)/bulkops $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bulkops db upgrade
	$(BIN)/bulkops api

clean:
	rm -rf var .pytest_cache
