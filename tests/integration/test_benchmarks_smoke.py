"""`benchmarks/run.py --quick` keeps working: it exits 0 and writes JSON with every section.

No timing is asserted (the benchmark is a measurement, see benchmarks/RESULTS.md); only that each
section ran, that both sides produced figures and that nothing was left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
DIST = Path(os.environ.get("CNI_IGNITE_DIST", str(REPO / "dist")))
SECTIONS = ("size", "startup", "ipam", "bridge", "whole", "density", "breakdown")

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.mark.skipif(not (DIST / "ignite-bridge").exists(), reason="frozen bundle not built (make build)")
@pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(), reason="Debian's Go plugins are not installed")
def test_quick_benchmark_runs_and_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out),
                          "--ours", str(DIST)], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    for section in SECTIONS:
        assert section in data, section
        assert "error" not in data[section], (section, data[section])
    for kind in ("bridge", "whole"):
        seq = data[kind]["sequential"]
        for side in ("ours", "go"):
            assert seq[side]["ADD"]["n"] == 3 and seq[side]["DEL"]["n"] == 3, (kind, side, seq[side])
            assert seq[side]["failures"] == 0 and not seq[side]["leaks"], (kind, side, seq[side])
        conc = next(v for k, v in data[kind].items() if k.startswith("concurrent_"))
        for side in ("ours", "go"):
            assert conc[side]["ADD_failures"] == 0 and conc[side]["duplicates"] == 0, conc[side]
    for mode in ("bridge", "routed"):  # --quick: 8 attachments per side and mode, blocks of 4
        for side in ("ours", "go"):
            d = data["density"][mode][side]
            assert d["failures"] == 0 and not d["leaks"], (mode, side, d)
            assert d["reached"] == 8 and d["stopped"] == "reached 8", (mode, side, d)
            # two calls per block run under GNU time for peak RSS, the others are timed
            assert [b["n"] for b in d["ADD_blocks"]] == [2, 2] and [b["n"] for b in d["DEL_blocks"]] == [2, 2], d
            assert all(d["rss_mb"][k] > 1 for k in ("ADD_few", "ADD_most", "DEL_few", "DEL_most")), d["rss_mb"]
    assert data["breakdown"]["ADD"]["failures"] == 0 and data["breakdown"]["DEL"]["failures"] == 0
    assert set(data["ipam"]) == {"0", "10", "100"}
    assert "| whole Ignite network" in res.stdout
    assert "Density, routed mode, 8 attachments" in res.stdout
