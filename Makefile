# cni-ignite: `make demo` (set up, build, show the main job) and `make test` (the whole suite).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: setup build test lint unit-test demo bench conformance clean

setup:
	@bash packaging/setup-host.sh

build: setup
	@VENV=$(VENV) bash packaging/build.sh

lint: setup
	$(VENV)/bin/ruff check cni_ignite tests benchmarks conformance packaging
	$(VENV)/bin/mypy

test: setup lint build
	$(VENV)/bin/pytest -q

demo: build
	@$(PY) -m demo

bench: build
	$(PY) benchmarks/run.py

conformance: setup
	$(PY) -m conformance --cni-path $(VENV)/bin --conflist conformance/ignite.conflist

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
