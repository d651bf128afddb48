"""Start-up cost of a plugin call: CNI_COMMAND=VERSION, whole process, wall clock.

Compares the shipped onedir bundle (dist/cni-ignite, through the ignite-* links), the onefile variant
and onedir with PyInstaller's runtime hooks kept (both built only for this comparison:
`bash packaging/build.sh --variants` -> build/onefile/cni-ignite, build/with-hooks/cni-ignite/), the
reference Go bridge (/usr/lib/cni/bridge) and the venv console scripts (unfrozen Python).

    python benchmarks/startup_bench.py [--runs 41] [--markdown]

Each program is started with os.posix_spawn (no subprocess overhead in the figure) with a minimal
environment, stdin from /dev/null and stdout to /dev/null; one warm-up run first. Results: median and p90
wall time, and median CPU time (user+sys, from wait4; less sensitive to a busy machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION"}


def spawn_ms(argv: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms user+sys of the child and its children)."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, ENV, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = (time.perf_counter() - t0) * 1000
    finally:
        os.close(null)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed")
    return elapsed, (usage.ru_utime + usage.ru_stime) * 1000


def measure(argv: list[str], runs: int) -> tuple[float, float, float]:
    """median wall, p90 wall, median CPU (ms)."""
    spawn_ms(argv)  # warm-up (page cache)
    samples = [spawn_ms(argv) for _ in range(runs)]
    wall = sorted(w for w, _ in samples)
    return statistics.median(wall), wall[max(0, round(0.9 * len(wall)) - 1)], statistics.median(c for _, c in samples)


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def candidates(links: Path) -> list[tuple[str, list[str], str]]:
    out: list[tuple[str, list[str], str]] = []
    bundle = REPO / "dist" / "cni-ignite"
    variants = [
        ("frozen onedir `{}` (shipped)", bundle / "cni-ignite", bundle, "MB folder"),
        ("frozen onedir `{}`, runtime hooks kept", REPO / "build" / "with-hooks" / "cni-ignite" / "cni-ignite",
         REPO / "build" / "with-hooks" / "cni-ignite", "MB folder"),
        ("frozen onefile `{}`", REPO / "build" / "onefile" / "cni-ignite", REPO / "build" / "onefile" / "cni-ignite",
         "MB file"),
    ]
    for i, (label, exe, sized, unit) in enumerate(variants):
        if not exe.exists():
            continue
        for name in ("ignite-ipam", "ignite-bridge"):
            (links / f"{i}-{name}").mkdir()
            (links / f"{i}-{name}" / name).symlink_to(exe)
            out.append((label.format(name), [str(links / f"{i}-{name}" / name)], f"{du(sized) / 1e6:.1f} {unit}"))
    go = Path("/usr/lib/cni/bridge")
    if go.exists():
        out.append(("Go reference `bridge`", [str(go)], f"{du(go) / 1e6:.1f} MB"))
    script = Path(sys.executable).parent / "ignite-ipam"
    if script.exists():
        out.append(("venv script `ignite-ipam` (unfrozen)", [str(script)], "needs Python + venv"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=41)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(label, *measure(argv, args.runs), size) for label, argv, size in candidates(Path(tmp))]
    if args.markdown:
        print(f"| VERSION, {args.runs} runs | median ms | p90 ms | CPU ms (median) | size |")
        print("|---|---|---|---|---|")
        for label, med, p90, cpu, size in rows:
            print(f"| {label} | {med:.1f} | {p90:.1f} | {cpu:.1f} | {size} |")
    else:
        for label, med, p90, cpu, size in rows:
            print(f"{label:45s} median {med:7.1f} ms  p90 {p90:7.1f} ms  cpu {cpu:6.1f} ms  {size}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
