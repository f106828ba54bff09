# edgepack: `make demo` installs and builds the bundled example; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EP := $(VENV)/bin/edgepack
DIGITS := examples/digits
# Where torch comes from. On Linux x86-64 the default index's torch is the CUDA build (GBs), so
# make takes PyTorch's CPU-only wheel index; override: `make install TORCH_INDEX=` (default
# index only) or TORCH_INDEX=https://download.pytorch.org/whl/cu128 (CUDA). Used for torch
# alone; the version is constraints.txt's either way.
ifeq ($(shell uname -s)-$(shell uname -m),Linux-x86_64)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
else
TORCH_INDEX ?=
endif

.PHONY: install demo test test-fast lint bench system-deps clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from TORCH_INDEX; then edgepack: the tested versions of constraints.txt
	$(PY) -m pip install -q -c constraints.txt $(if $(TORCH_INDEX),--retries 2 --extra-index-url $(TORCH_INDEX)) torch
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
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
