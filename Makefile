# streamfn: `make run` serves the local app, `make test` runs every check. Both install what they
# need into .venv first; nothing else is required on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
PORT ?= 8000


.PHONY: bench run run-lambda test lint typecheck unit install browser-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[local]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.run-installed

# The AWS SAM CLI in a venv of its own (its pins clash with the app's); its wheel carries AWS's
# Runtime Interface Emulator, which the conformance tests run.
SAM_VENV := .tools/sam
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli
	touch $@

install: $(VENV)/.dev-installed

run: $(VENV)/.run-installed
	PORT=$(PORT) $(BIN)/python local/serve.py

# The same app behind a local Lambda function URL: functions/bootstrap under the emulator.
run-lambda: $(VENV)/.dev-installed
	PORT=$${PORT:-9000} $(BIN)/python local/lambda_emulator.py

# Debian's chromium for the browser tests (Playwright drives it; it downloads no browser).
browser-deps:
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is not installed and cannot be installed here: browser tests will skip"; \
	fi

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

unit: $(VENV)/.dev-installed $(SAM_VENV)/.installed browser-deps
	$(BIN)/pytest

test: lint typecheck unit

# Benchmarks report ratios against a baseline measured in the same run, not timed assertions.
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/lambda_bench.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
