"""The mixed soak's quick profile (soak.py; the long one: ``make soak``): 8 workers, random ADD/CHECK/DEL/GC
with and without a mapped port, SIGKILLed plugins, host-local on the same dataDir, namespaces deleted
before their DEL. No address twice, live attachments whole, nothing left at the end; memory and CPU per
call checked loosely (a short run on a loaded host)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from soak import HOST_LOCAL, Soak, report

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(not HOST_LOCAL.exists(), reason="needs Debian's containernetworking-plugins")]


def quick_soak(seed: int, launcher: Path | None = None) -> tuple[dict[str, Any], str, int]:
    """Run the quick soak; assert its invariants held and nothing is left. (result, report, calls the worker
    served: -1 without one)."""
    soak = Soak("quick", seed, launcher=launcher)
    try:
        res = soak.main()
        served = soak.stop_worker()
    finally:
        soak.close()
    text = f"seed {seed}, served by a worker: {served}\n{report(res)}"
    assert not res["errors"], text
    assert not res["leftovers"], text
    assert res["counts"].get("ADD", 0) >= 20 and res["counts"].get("ADD killed", 0) >= 1, text
    return res, text, served


def test_quick_soak_keeps_every_invariant_and_leaves_nothing() -> None:
    res, text, _ = quick_soak(int(os.environ.get("SOAK_SEED", "13")))
    first, last = res["trend"]["peak rss"]
    assert last <= first * 1.10, f"peak RSS grew: {text}"
    cpu_first, cpu_last = res["trend"]["cpu"]
    assert cpu_last <= cpu_first * 2.0, f"CPU per call grew: {text}"


def test_peak_rss_is_the_plugins_not_the_harness() -> None:
    """The first long soak saw 'peak RSS' grow 1.31x: wait4's ru_maxrss of a child starts at the spawning
    process's own high-water mark, and the soak's process grows with its call records. Measured through GNU
    time, a call's RSS must not follow this process's: hold 200 MB here and measure a VERSION call."""
    from soak import TIME

    if not TIME.exists():
        pytest.skip(f"needs GNU time at {TIME} (Debian package time)")
    ballast = bytearray(200 * 1024 * 1024)
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])  # touch every page: resident
    soak = Soak("quick", 1)
    try:
        call = soak.run("VERSION", b"")
    finally:
        soak.close()
    assert call.rc == 0, call.stderr
    assert 1000 < call.rss_kb < 150 * 1024, f"VERSION peak RSS {call.rss_kb} kB follows this process's 200 MB"
    del ballast


@pytest.mark.frozen
def test_quick_soak_through_the_worker_keeps_every_invariant_and_leaves_nothing() -> None:
    """The same soak with every ignite-bridge call handed by the bundle's launcher to a `cni-ignite worker`
    (docs/WORKER.md): a SIGKILLed call is a killed launcher, whose forked child the worker must kill mid-call."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "frozen"))
    from bundle import BUNDLE

    launcher = BUNDLE / "cni-ignite-launch"
    if not os.access(launcher, os.X_OK):
        pytest.skip(f"no launcher at {launcher}: run `make build` (`make test` builds it first)")
    res, text, served = quick_soak(int(os.environ.get("SOAK_SEED", "17")), launcher)
    assert served >= res["counts"].get("ADD", 0), text  # the calls did go through the worker
