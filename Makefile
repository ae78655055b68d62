# Two commands do everything: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LEADS  ?= 50000
SEED   ?= 7

.PHONY: demo test install dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	@touch $@

$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,bench]"
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	$(BIN)/leadscore generate --leads $(LEADS) --seed $(SEED) --out data/snapshot
	$(BIN)/leadscore features --snapshot data/snapshot --out data/training_set.parquet
	@echo
	@echo "Done. data/snapshot/ holds a synthetic CRM snapshot (truth.parquet: the true probabilities);"
	@echo "data/training_set.parquet holds one row per MQL at its mql_at: features and label."
	@echo "Next: inspect it with  $(BIN)/python -c \"import pandas as pd; print(pd.read_parquet('data/training_set.parquet').describe().T)\""
	@echo "      try a real export: $(BIN)/leadscore features -c examples/x-education.yaml --out data/x-education.parquet"
	@echo "      every job:         $(BIN)/leadscore --help"

test: dev
	$(BIN)/python -m pytest

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: dev
	$(BIN)/python bench/features.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
