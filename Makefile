# The two commands: `make demo` (set up + run the churn example) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-10)
GM := $(abspath $(BIN))/gristmill

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	rm -rf demo
	$(GM) init demo --example churn
	cd demo && $(GM) run
	@echo "--- the same run again: nothing to do"
	cd demo && $(GM) run
	cd demo && $(GM) status
	cd demo && $(GM) show user_profile --version 0 --limit 5
	cd demo && $(GM) history transactions
	cd demo && $(GM) lineage user_profile --upstream
	cd demo && $(GM) quarantine transactions --limit 5

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests

BENCH := benchmarks/.venv
$(BENCH)/.installed: benchmarks/requirements.txt requirements.lock
	$(PY) -m venv $(BENCH)
	# the package's own pins (pyproject) plus the peers; the dev lock is not used here
	$(BENCH)/bin/pip install -q --disable-pip-version-check -r benchmarks/requirements.txt -e .
	touch $@

bench: $(BENCH)/.installed
	$(BENCH)/bin/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) demo
