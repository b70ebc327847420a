# One command to try it (make demo), one to test it (make test). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/var/dagster

.PHONY: demo test dev api bench clean

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

## the Dagster UI on http://127.0.0.1:3000 (webserver + daemon for sensors and schedules)
dev: $(BIN)/bulkops $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bulkops db upgrade
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## the bulk-job HTTP API on http://127.0.0.1:8000
api: $(BIN)/bulkops $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/bulkops db upgrade
	$(BIN)/bulkops api

clean:
	rm -rf var .pytest_cache
