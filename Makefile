# Two commands do everything: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LEADS  ?= 400000
SEED   ?= 7
# pytest-xdist workers of `make test` (auto: one per core)
TEST_WORKERS ?= auto
FAST   := not slow and not integration and not api and not postgres and not spark and not shared and not browser
# the nights the demo scores, as a nightly job would: the snapshot's last two days
NIGHTS ?= 2026-06-29 2026-06-30

.PHONY: demo test test-fast install dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	@touch $@

$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench,spark]"
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	$(BIN)/leadscore generate --leads $(LEADS) --seed $(SEED) --out data/snapshot
	$(BIN)/leadscore features --snapshot data/snapshot --out data/training_set.parquet
	$(BIN)/leadscore train --training-set data/training_set.parquet --snapshot data/snapshot --report-dir data/report
	@for night in $(NIGHTS); do \
		$(BIN)/leadscore predict --snapshot data/snapshot --as-of $${night}T00:00:00Z --out data/scores/$$night.parquet || exit 1; \
	done
	$(BIN)/leadscore monitor $(foreach night,$(NIGHTS),--scores data/scores/$(night).parquet) --report-dir data/monitor \
		|| test $$? -eq 3
	@echo
	@echo "Done:"
	@echo "  data/snapshot/              a synthetic CRM snapshot (truth.parquet: the true probabilities)"
	@echo "  data/training_set.parquet   rows per MQL at its mql_at and at sampled ages while open: features and label"
	@echo "  data/report/index.html      the model against the rules and the truth: reliability, lift, SHAP, tiers"
	@echo "  mlflow.db, mlartifacts/     the MLflow run and the registered model leadscore@champion"
	@echo "  data/scores/*.parquet       nightly scores of every open MQL ($(NIGHTS)), each with its .monitor.json"
	@echo "  data/monitor/report.html    the monitor's verdict on those nights (monitor.json beside it)"
	@echo "Next:"
	@echo "  open the report:     xdg-open data/report/index.html"
	@echo "  browse MLflow:       $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db   (http://127.0.0.1:5000)"
	@echo "  serve the champion:  $(BIN)/leadscore serve --accounts data/snapshot   (then http://127.0.0.1:8000/docs)"
	@echo "  fit the rule points: $(BIN)/leadscore rules suggest --snapshot data/snapshot"
	@echo "  a real export:       $(BIN)/leadscore train -c examples/x-education.yaml --cv 5"
	@echo "  every job:           $(BIN)/leadscore --help"

# every core for most tests (whole files per worker, so module fixtures build once), then the
# tests marked `serial` (a server's timing under load) alone, so no other test skews them.
# One OpenMP thread per worker: LightGBM's threads on every core in every worker oversubscribe
# the cores, and spinning OpenMP threads then wait on each other.
test: dev
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -m serial

# The unit, data and contract tests: no trained model, no services, under a minute.
test-fast: dev
	$(BIN)/python -m pytest -q -m "$(FAST)"

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: dev
	$(BIN)/python bench/features.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
