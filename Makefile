# The two commands: `make demo` (set up + run the churn example) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha1sum | cut -c1-10)
GM := $(abspath $(BIN))/gristmill

.PHONY: setup demo demo-drift test lint bench bench-feast-env bench-training-set bench-serving bench-monitoring bench-orchestration bench-sources bench-streams bench-engines bench-ui clean

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
	@echo "--- the model trained by the run: metrics with 95% intervals, gates, scoring"
	cd demo && $(GM) models
	cd demo && $(GM) models show churn 1
	cd demo && $(GM) promote churn 1 --alias champion --reason "first model; gates pass on the example data"
	cd demo && $(GM) score churn --table user_profile --as-of 2026-06-01
	cd demo && $(GM) lookup user_profile u_0000006
	cd demo && $(GM) predict churn --entity user_id=u_0000006
	cd demo && $(GM) show churn__predictions --limit 5
	cd demo && $(GM) models card churn champion --format html --out churn-card.html
	$(MAKE) --no-print-directory demo-drift

# The closed loop: serve on pre-drift data, new (drifted) months arrive, monitors fire,
# retraining runs, the gates decide, the report shows it.
demo-drift: setup
	rm -rf demo-drift
	$(GM) init demo-drift --example churn --drift
	cd demo-drift && $(GM) run
	cd demo-drift && $(GM) promote churn 1 --alias champion --reason "first model"
	@echo "--- serve 100 requests on the pre-drift data, then stop the server (the log is flushed)"
	cd demo-drift && ($(GM) serve churn --no-auth --port 8765 & echo $$! > .serve.pid) && \
	  for i in $$(seq 1 100); do \
	    curl -sf --retry 20 --retry-connrefused --retry-delay 1 -o /dev/null \
	      -H 'Content-Type: application/json' \
	      -d "{\"entity\": {\"user_id\": \"u_$$(printf %07d $$((i * 29)))\"}}" \
	      localhost:8765/v1/services/churn/predict || true; \
	  done; kill $$(cat .serve.pid); while kill -0 $$(cat .serve.pid) 2>/dev/null; do sleep 0.2; done
	cd demo-drift && $(GM) score churn --table user_profile --as-of 2026-06-01
	@echo "--- monitors before the drift"
	cd demo-drift && $(GM) monitor run
	@echo "--- three drifted months arrive; one scheduler tick (nobody types run): the sensor"
	@echo "--- queues the build, monitors fire and queue a retrain run, the gates decide"
	cp -r demo-drift/arriving/. demo-drift/data/
	cd demo-drift && $(GM) scheduler --once
	cd demo-drift && $(GM) runs --kind retrain
	cd demo-drift && $(GM) sensors
	cd demo-drift && $(GM) score churn --table user_profile --as-of 2026-09-01 --model-version 1
	cd demo-drift && $(GM) monitor run churn_performance
	cd demo-drift && $(GM) monitor status
	cd demo-drift && $(GM) models history churn
	cd demo-drift && $(GM) monitor report churn --out report.html

test: setup
	$(BIN)/mypy src/gristmill
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src/gristmill

BENCH := benchmarks/.venv
$(BENCH)/.installed: benchmarks/requirements.txt requirements.lock
	$(PY) -m venv $(BENCH)
	# the package's own pins (pyproject) plus the peers; the dev lock is not used here
	$(BENCH)/bin/pip install -q --disable-pip-version-check -r benchmarks/requirements.txt -e '.[databases,streams]'
	touch $@

FEAST := benchmarks/.venv-feast
$(FEAST)/.installed: benchmarks/requirements-feast.txt
	$(PY) -m venv $(FEAST)
	$(FEAST)/bin/pip install -q --disable-pip-version-check -r benchmarks/requirements-feast.txt
	touch $@

bench-feast-env: $(FEAST)/.installed

bench: $(BENCH)/.installed $(FEAST)/.installed benchmarks/.venv-mlflow/.installed benchmarks/.venv-bentoml/.installed benchmarks/.venv-evidently/.installed
	$(BENCH)/bin/python benchmarks/pipeline.py
	$(BENCH)/bin/python benchmarks/training_set.py
	$(BENCH)/bin/python benchmarks/serving.py
	$(BENCH)/bin/python benchmarks/monitoring.py

bench-training-set: $(BENCH)/.installed $(FEAST)/.installed
	$(BENCH)/bin/python benchmarks/training_set.py

benchmarks/.venv-%/.installed: benchmarks/requirements-%.txt
	$(PY) -m venv benchmarks/.venv-$*
	benchmarks/.venv-$*/bin/pip install -q --disable-pip-version-check -r $<
	touch $@

# needs wrk (apt-get install wrk); builds the large example first if it is not there
bench-serving: $(BENCH)/.installed benchmarks/.venv-mlflow/.installed benchmarks/.venv-bentoml/.installed
	@command -v wrk >/dev/null || { echo "bench-serving needs wrk: apt-get install wrk"; exit 2; }
	$(BENCH)/bin/python benchmarks/serving.py

# 100-step chain and a 365-partition backfill vs Dagster, tick latency, CLI start
bench-orchestration: $(BENCH)/.installed
	$(BENCH)/bin/python benchmarks/orchestration.py

# PostgreSQL -> table: gristmill vs an ADBC -> Parquet copy (the floor) vs dlt (its own venv)
bench-sources: $(BENCH)/.installed benchmarks/.venv-dlt/.installed
	$(BENCH)/bin/python benchmarks/sources.py

# JetStream -> Delta, exactly once, vs a plain nats-py consumer writing Parquet
bench-streams: $(BENCH)/.installed
	$(BENCH)/bin/python benchmarks/streams.py

# user_profile on Spark: gristmill (DuckDB SQL translated) vs hand-written Spark SQL; auto vs forced Spark
bench-engines: $(BENCH)/.installed
	$(BENCH)/bin/python benchmarks/engines.py

# drift vs Evidently's DataDriftPreset (100k and 1M rows x 20 columns, made on first run)
bench-monitoring: setup benchmarks/.venv-evidently/.installed
	$(BIN)/python benchmarks/monitoring.py

# the UI and API on the large example with 1,000 runs and 100 model versions in the
# catalog, and a 500-node lineage in Debian's Chromium (apt-get install chromium)
bench-ui: setup
	@command -v chromium >/dev/null || { echo "bench-ui needs chromium: apt-get install chromium"; exit 2; }
	$(BIN)/python benchmarks/ui.py

clean:
	rm -rf $(VENV) demo demo-drift
