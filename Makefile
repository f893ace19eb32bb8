# Two commands on a fresh machine:  `make demo` (the main job, embedded) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint bench clean

$(STAMP): pyproject.toml scripts/install-system-deps.sh
	./scripts/install-system-deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch pinned first, so the vlm extra does not pull a CUDA build.
	$(PY) -m pip install -q 'torch==2.13.0' 'torchvision==0.28.*'
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videopipe demo

# Tests run in a new random order each time (pytest-randomly): the run's header prints the seed, and
# `make test PYTEST_ARGS=--randomly-seed=N` replays that order; PYTEST_ARGS="-p no:randomly" turns shuffling off.
PYTEST_ARGS ?=

test: $(STAMP)
	./scripts/start-services.sh
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	./scripts/start-services.sh
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# Everything: the default suite, then the slow one (what CI runs).
test-all: test test-slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/scenes.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache demo.videopipe
