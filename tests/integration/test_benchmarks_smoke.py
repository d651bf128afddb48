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
SECTIONS = ("size", "startup", "ipam", "bridge", "whole", "accumulate", "breakdown")

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
    for side in ("ours", "go"):
        assert data["accumulate"][side]["failures"] == 0
    assert data["breakdown"]["ADD"]["failures"] == 0 and data["breakdown"]["DEL"]["failures"] == 0
    assert set(data["ipam"]) == {"0", "10", "100"}
    assert "| whole Ignite network" in res.stdout
