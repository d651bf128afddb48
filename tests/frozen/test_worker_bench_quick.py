"""benchmarks/worker_bench.py --quick (warm start vs exec'd vs Go, the whole Ignite network) runs to the end against
the frozen bundle: every call of every side succeeds, nothing leaks, the worker served every warm call (none fell
back to an exec of the bundle) and stopped cleanly, and no throwaway namespace or worker is left behind.

No speed is asserted: the speed goals live in the benchmark's figures (benchmarks/WORKER.md), not in timed tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bundle import BUNDLE, DIST, REPO

pytestmark = pytest.mark.privileged

GO_BRIDGE = Path("/usr/lib/cni/bridge")


def namespaces(tag: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{tag}-")]


@pytest.mark.skipif(not GO_BRIDGE.exists(), reason=f"no Go CNI plugins at {GO_BRIDGE.parent} (Debian's "
                    "containernetworking-plugins): the benchmark compares against them")
@pytest.mark.skipif(not (BUNDLE / "cni-ignite-launch").exists(),
                    reason=f"no warm-start launcher at {BUNDLE / 'cni-ignite-launch'}: run `make build`")
def test_worker_bench_quick_completes_every_call_served_nothing_leaked(tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "worker_bench.py"), "--quick", "--ours",
                          str(DIST), "--json", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(out.read_text())
    seq = doc["sequential"]
    assert set(seq) == {"direct", "warm", "no-worker", "go"}  # no-worker: the launcher execs the bundle itself
    for side in seq:
        assert seq[side]["failures"] == 0 and not seq[side]["warm_error"], seq[side]
        assert seq[side]["leaks"] == {}, seq[side]["leaks"]
        for verb in ("ADD", "DEL"):
            assert seq[side][verb]["wall"]["n"] == doc["n"], seq[side][verb]
    # One ignite-bridge call per ADD/DEL: warm-up pair + n pairs + the memory pass's pair(s).
    assert seq["warm"]["plugin_calls"] == 2 * doc["n"]
    workers = [doc["worker"]] + [by["warm"]["worker"] for by in doc["concurrent"].values()]
    for w in workers:
        assert w["served"] == w["calls"] > 0, w  # every warm call ran in a forked child of the worker
        assert w["rc"] == 0 and not w["socket_left"], w
        assert not Path(f"/proc/{w['pid']}").exists(), f"worker {w['pid']} still running"
    assert doc["concurrent"], "the quick mode runs a concurrent round"
    for k, by in doc["concurrent"].items():
        for side, c in by.items():
            assert c["ADD_failures"] == c["DEL_failures"] == c["duplicates"] == 0, (k, side, c)
            assert c["addresses"] == int(k) and c["leaks"] == {}, (k, side, c)
    assert doc["memory"]["warm"]["worker_vmhwm_mb"] > 0
    assert doc["netns_tag"].startswith("cnwb")
    assert namespaces(doc["netns_tag"]) == [], "throwaway namespaces left behind"
