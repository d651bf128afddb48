"""Start-up import cost of ignite-ipam's paths, and the two measurements behind the design choices.

    python benchmarks/ipam_imports.py [--runs 7] [--ours PATH]

Prints Markdown (used for benchmarks/IMPORTS.md): ``python -X importtime`` of the real console
script on the VERSION path, an error path and an IPAM ADD (best of --runs, top-level imports by
cumulative time), process wall times, the cost of ``import dataclasses`` plus per-class cost of
frozen dataclasses vs NamedTuples, and the cost of importing filelock (and pyroute2, for scale).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable


def importtime(argv: list[str], env: dict[str, str], stdin: bytes, runs: int) -> list[tuple[str, int, int]]:
    """(module, depth, cumulative µs) of the fastest of `runs` runs."""
    best: list[tuple[str, int, int]] = []
    best_total = None
    for _ in range(runs):
        proc = subprocess.run([PY, "-X", "importtime", *argv], input=stdin, env=env, capture_output=True, check=False)
        rows = []
        for line in proc.stderr.decode().splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _, cumulative, name = line[len("import time:"):].split("|")
            depth = (len(name) - len(name.lstrip()) - 1) // 2
            rows.append((name.strip(), depth, int(cumulative)))
        total = sum(c for _, d, c in rows if d == 0)
        if best_total is None or total < best_total:
            best, best_total = rows, total
    return best


def wall(argv: list[str], env: dict[str, str], stdin: bytes, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, input=stdin, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def top_table(rows: list[tuple[str, int, int]], limit: int = 12) -> str:
    top = sorted((r for r in rows if r[1] == 0), key=lambda r: -r[2])
    total = sum(r[2] for r in top)
    out = ["| module (top level) | cumulative ms |", "|---|---:|"]
    out += [f"| {name} | {us / 1000:.2f} |" for name, _, us in top[:limit]]
    out.append(f"| **all {len(top)} top-level imports** | **{total / 1000:.2f}** |")
    ours = [(n, us) for n, d, us in rows if n.startswith("cni_ignite")]
    out.append("")
    out.append("cni_ignite modules (cumulative ms, nested): " + ", ".join(f"{n} {us / 1000:.2f}" for n, us in ours))
    return "\n".join(out)


def snippet_ms(code: str, runs: int) -> float:
    """Best-of-runs time (ms) of exec'ing `code` in a fresh interpreter, timed inside it."""
    probe = f"import time\nt=time.perf_counter()\nexec({code!r})\nprint((time.perf_counter()-t)*1000)"
    return min(float(subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True).stdout)
               for _ in range(runs))


def classes(kind: str, n: int) -> str:
    fields = "    a: int\n    b: str\n    c: float = 0.0\n    d: object = None\n"
    if kind == "dataclass":
        head = "from dataclasses import dataclass\n"
        return head + "".join(f"@dataclass(frozen=True, slots=True, kw_only=True)\nclass C{i}:\n{fields}"
                              for i in range(n))
    head = "from typing import NamedTuple\n"
    return head + "".join(f"class C{i}(NamedTuple):\n{fields}" for i in range(n))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--ours", default=str(Path(PY).parent / "ignite-ipam"))
    opts = ap.parse_args()
    runs = opts.runs
    base = {"PATH": "/usr/bin:/bin"}
    with tempfile.TemporaryDirectory() as tmp:
        conf = json.dumps({"cniVersion": "0.4.0", "name": "imp", "type": "ignite-ipam",
                           "ipam": {"subnet": "10.61.0.0/16", "dataDir": tmp}}).encode()
        add_env = {**base, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
        del_env = {**add_env, "CNI_COMMAND": "DEL"}
        paths = {
            "VERSION": ({**base, "CNI_COMMAND": "VERSION"}, b'{"cniVersion":"1.0.0"}'),
            "error (missing env)": ({**base, "CNI_COMMAND": "ADD"}, b"{}"),
            "error (bad subnet)": (add_env, b'{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.0.0.1/8"}}'),
            "IPAM ADD": (add_env, conf),
        }
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {runs} runs.\n")
        print("## Process wall time (exec to exit, best of runs)\n")
        print("| path | ms |\n|---|---:|")
        print(f"| `python -c pass` | {wall([PY, '-c', 'pass'], base, b'', runs):.1f} |")
        print(f"| `python -S -c pass` | {wall([PY, '-S', '-c', 'pass'], base, b'', runs):.1f} |")
        for name, (env, stdin) in paths.items():
            ms = []
            for _ in range(runs):  # ADD then DEL so that every ADD starts from the same state
                ms.append(wall([opts.ours], env, stdin, 1))
                if name == "IPAM ADD":
                    wall([opts.ours], del_env, conf, 1)
            print(f"| ignite-ipam {name} | {min(ms):.1f} |")
        for name, (env, stdin) in paths.items():
            rows = importtime([opts.ours], env, stdin, runs)
            if name == "IPAM ADD":
                subprocess.run([opts.ours], input=conf, env=del_env, capture_output=True, check=False)
            print(f"\n## `-X importtime`: {name}\n")
            print(top_table(rows))
            heavy = [m for m in ("pyroute2", "filelock", "netaddr", "subprocess", "asyncio", "dataclasses",
                                 "inspect", "hashlib", "signal", "fcntl") if any(n == m for n, _, _ in rows)]
            print(f"\nImported on this path among pyroute2, filelock, netaddr, subprocess, asyncio, dataclasses, "
                  f"inspect, hashlib, signal, fcntl: {', '.join(heavy) or 'none'}")
    print("\n## dataclasses vs NamedTuple\n")
    imp = importtime(["-c", "import dataclasses"], base, b"", runs)
    dc_import = next(us for n, d, us in imp if n == "dataclasses" and d == 0) / 1000
    nt_import = next(us for n, d, us in importtime(["-c", "import typing"], base, b"", runs)
                     if n == "typing" and d == 0) / 1000
    n = 40
    dc = (snippet_ms(classes("dataclass", n), runs) - snippet_ms("import dataclasses", runs)) / n
    nt = (snippet_ms(classes("namedtuple", n), runs) - snippet_ms("import typing", runs)) / n
    print("| | import (cumulative ms) | per class (ms) |\n|---|---:|---:|")
    print(f"| `@dataclass(frozen=True, slots=True, kw_only=True)` | {dc_import:.2f} | {dc:.3f} |")
    print(f"| `typing.NamedTuple` | {nt_import:.2f} (`typing`) | {nt:.3f} |")
    print(f"\n({n} classes of 4 fields each, timed inside a fresh interpreter, import time subtracted.)")
    print("\n## Libraries not imported on the plugin paths\n")
    print("| import | cumulative ms |\n|---|---:|")
    for code in ("import filelock", "import netaddr", "import subprocess", "import inspect",
                 "from pyroute2 import IPRoute"):
        rows = importtime(["-c", code], base, b"", runs)
        total = sum(us for _, d, us in rows if d == 0) / 1000
        print(f"| `{code}` | {total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
