# Factory Portal — `make run` starts the portal, `make test` runs the whole test suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench screenshots gpu-check install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml scripts/requirements.py | $(BIN)/python
	@mkdir -p var
	$(PYTHON) scripts/requirements.py > var/requirements.txt
	$(BIN)/pip install -q -r var/requirements.txt
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PYTHON) scripts/requirements.py dev > var/requirements-dev.txt
	$(BIN)/pip install -q -r var/requirements-dev.txt
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	scripts/run.sh

test: install-dev
	scripts/test.sh

lint: install-dev
	$(BIN)/ruff check .

bench: install-dev
	scripts/with_postgres.sh $(BIN)/python bench/run_all.py

# On a GPU machine: the portal against this machine's real GPUs, end to end (scripts/gpu_check.py; docs/telemetry.md).
gpu-check: install
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

screenshots: install-dev
	SCREENSHOT_DIR=$(CURDIR)/docs/img scripts/with_postgres.sh $(BIN)/pytest -q -m browser tests/browser

clean:
	rm -rf $(VENV) var staticfiles
