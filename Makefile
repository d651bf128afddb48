# cni-ignite: `make demo` (set up, build, show the main job) and `make test` (the whole suite).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: setup build release test lint unit-test demo vm-demo bench conformance clean fuzz

setup:
	@bash packaging/setup-host.sh

build: setup
	@VENV=$(VENV) bash packaging/build.sh

# dist/cni-ignite-<version>-linux-amd64.tar.gz (+ .sha256): the bundle, conf/, README.md, LICENSE
release: build
	@bash packaging/release.sh

lint: setup
	$(VENV)/bin/ruff check cni_ignite tests benchmarks conformance packaging demo
	$(VENV)/bin/mypy

test: setup lint build
	$(VENV)/bin/pytest -q

# Property-based fuzzing with the long hypothesis profile (`make test` runs tests/fuzz with the quick one).
fuzz:
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest -q tests/fuzz

demo: build
	@$(PY) -m demo

# Two real microVM guests (QEMU) on the VM mode, step by step; VM_DEMO_ARGS="--mode bridge" etc.
vm-demo: build
	@$(PY) tests/vm/demo.py $(VM_DEMO_ARGS)

bench: build
	$(PY) benchmarks/run.py

conformance: setup
	$(PY) -m conformance --cni-path $(VENV)/bin --conflist conformance/ignite.conflist

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
