"""The mixed soak's quick profile (soak.py; the long one: ``make soak``): 8 workers, random ADD/CHECK/DEL/GC
with and without a mapped port, SIGKILLed plugins, host-local on the same dataDir, namespaces deleted
before their DEL. No address twice, live attachments whole, nothing left at the end; memory and CPU per
call checked loosely (a short run on a loaded host)."""

from __future__ import annotations

import os

import pytest
from soak import HOST_LOCAL, Soak, report

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(not HOST_LOCAL.exists(), reason="needs Debian's containernetworking-plugins")]


def test_quick_soak_keeps_every_invariant_and_leaves_nothing() -> None:
    seed = int(os.environ.get("SOAK_SEED", "13"))
    soak = Soak("quick", seed)
    try:
        res = soak.main()
    finally:
        soak.close()
    text = f"seed {seed}\n{report(res)}"
    assert not res["errors"], text
    assert not res["leftovers"], text
    assert res["counts"].get("ADD", 0) >= 20 and res["counts"].get("ADD killed", 0) >= 1, text
    first, last = res["trend"]["peak rss"]
    assert last <= first * 1.10, f"peak RSS grew: {text}"
    cpu_first, cpu_last = res["trend"]["cpu"]
    assert cpu_last <= cpu_first * 2.0, f"CPU per call grew: {text}"
