"""The per-call log's cost: the frozen ignite-ipam's DEL with and without ``logFile`` (logLevel info),
interleaved in one run; the cost is the median of the per-pair differences of wall and CPU time per call
(target: <= 1 ms at info).

    .venv/bin/python benchmarks/calllog_bench.py [--n 60] [--ours dist]

DEL of an attachment without a lease touches only the IPAM's dataDir (temp folder), so the difference
between the two is the log: reading the keys, building the line, one O_APPEND write.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import spawn

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ours", default=str(REPO / "dist"))
    opts = ap.parse_args()
    plugin = str(Path(opts.ours) / "ignite-ipam")
    with tempfile.TemporaryDirectory(prefix="logbench-") as tmp:
        base = {"cniVersion": "1.0.0", "name": "logbench", "type": "ignite-ipam",
                "ipam": {"type": "ignite-ipam", "subnet": "10.1.0.0/16", "dataDir": f"{tmp}/data"}}
        confs = {"off": base, "info": {**base, "logFile": f"{tmp}/cni.log", "logLevel": "info"}}
        wall: dict[str, list[float]] = {k: [] for k in confs}
        cpu: dict[str, list[float]] = {k: [] for k in confs}
        for i in range(opts.n + 3):
            for kind, conf in confs.items():
                env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "DEL", "CNI_CONTAINERID": f"c{i}",
                       "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
                r = spawn([plugin], stdin=json.dumps(conf).encode(), env=env)
                if r.rc != 0:
                    raise RuntimeError(f"DEL failed: {r.stdout!r} {r.stderr!r}")
                if i >= 3:  # warm-up
                    wall[kind].append(r.wall_ms)
                    cpu[kind].append(r.cpu_ms)
        lines = Path(f"{tmp}/cni.log").read_text().splitlines()
        assert len(lines) == opts.n + 3, len(lines)
    out = {k: {"wall_ms": round(statistics.median(wall[k]), 2), "cpu_ms": round(statistics.median(cpu[k]), 2)}
           for k in confs}
    # The cost: the median of the per-round differences (each round runs both configurations back to back, so a
    # load change between rounds cancels out), more robust on a busy machine than the difference of medians.
    out["cost"] = {metric: round(statistics.median(a - b for a, b in zip(t["info"], t["off"], strict=True)), 2)
                   for metric, t in (("wall_ms", wall), ("cpu_ms", cpu))}
    print(json.dumps(out))
    print(f"per-call log at info: +{out['cost']['cpu_ms']} ms CPU, +{out['cost']['wall_ms']} ms wall per call "
          f"(median of the differences of {opts.n} interleaved pairs of DELs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
