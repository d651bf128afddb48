# cni-ignite: `make demo` (set up, build, show the main job) and `make test` (the whole suite).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: setup build release test lint unit-test demo vm-demo bench conformance clean faults-long soak fuzz multinode-demo flanneld

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
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(VENV)/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) benchmarks/run.py
	$(PY) benchmarks/calllog_bench.py
	$(PY) benchmarks/guard_bench.py
	$(PY) benchmarks/multinode_bench.py
	$(PY) benchmarks/worker_bench.py

# Three namespace "hosts" with the node agent on a real etcd, real QEMU guests pinging across them (issue 11).
multinode-demo: build
	@$(PY) tests/node/demo.py

# flanneld and flannel's CNI plugin built offline from source trees with vendored dependencies, into build/flannel,
# for the interop tests in tests/node (they skip without them); see tests/node/FLANNEL-INTEROP.md for the sources.
FLANNEL_SRC ?= build/flannel/src
FLANNEL_CNI_TREE ?= build/flannel/cni-src
flanneld:
	nice -n 10 tools/build-flanneld.sh $(FLANNEL_SRC) build/flannel $(wildcard $(FLANNEL_CNI_TREE))

# Every index of every swept syscall (issue 13 §2), ENOSPC/EIO/EACCES/SIGKILL, bridge and ipam, ADD and DEL; writes
# the outcome table to build/ (tests/faults/RESULTS.md is the curated record of the sharded, strided run it
# describes). FAULTS_PLUGIN_DIR=dist runs the frozen bundle instead of the source (.venv/bin).
faults-long: setup
	$(PY) tests/faults/harness.py --profile long --out build/faults-RESULTS.md

# The mixed soak's long profile (issue 13 §3); SOAK_ARGS="--ops 10000 --seed 7" etc.
soak: setup
	$(PY) tests/soak/soak.py --profile long $(SOAK_ARGS)

conformance: setup
	$(PY) -m conformance --cni-path $(VENV)/bin --conflist conformance/ignite.conflist

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache
