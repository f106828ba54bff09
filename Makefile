# edgepack: `make demo` installs and builds the bundled example; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EP := $(VENV)/bin/edgepack
DIGITS := examples/digits

.PHONY: install demo test test-fast lint bench system-deps clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in pyproject.toml (torch==2.13.0, CPU build)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(EP) targets list
	$(EP) build $(DIGITS)/model.py:build_model --weights $(DIGITS)/weights.pt \
	    --input-shape 1x1x32x32 --target rpi4 \
	    --calibration $(DIGITS)/calib.npz --eval $(DIGITS)/eval.npz --max-accuracy-drop 1.0 --force
	$(EP) build $(DIGITS)/model.py:build_model --weights $(DIGITS)/weights.pt \
	    --input-shape 1x1x32x32 --target host \
	    --calibration $(DIGITS)/calib.npz --eval $(DIGITS)/eval.npz --max-accuracy-drop 1.0 --force
	$(EP) inspect dist/digits-rpi4/model.tflite

# System packages and device stand-ins the tests use (sshd, qemu, adbd, ...). Idempotent.
system-deps:
	bash scripts/setup-test-env.sh

test: install system-deps
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not integration"

lint: install
	$(VENV)/bin/ruff check edgepack tests devices benchmarks examples
	$(VENV)/bin/ruff format --check edgepack tests devices benchmarks examples
	$(VENV)/bin/mypy

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf dist .pytest_cache .mypy_cache .ruff_cache
