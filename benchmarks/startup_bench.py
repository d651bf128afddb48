"""Start-up cost of a plugin call: CNI_COMMAND=VERSION, whole process, wall clock.

Compares the shipped onedir bundle (dist/cni-ignite, through the ignite-* links), the onefile variant
and onedir with PyInstaller's runtime hooks kept (both built only for this comparison:
`bash packaging/build.sh --variants` -> build/onefile/cni-ignite, build/with-hooks/cni-ignite/), the
reference Go bridge (/usr/lib/cni/bridge) and the venv console scripts (unfrozen Python).

    python benchmarks/startup_bench.py [--runs 41] [--markdown]
    sudo python benchmarks/startup_bench.py --compare NAME=DIR[:SETNS_MODULE] [NAME=DIR ...] [--runs 41]
    python benchmarks/startup_bench.py --restart [--runs 41]
    python benchmarks/startup_bench.py --importtime NAME=DIR[:SETNS_MODULE] [NAME=DIR ...] [--runs 41]

--compare: bundles (a folder holding the `cni-ignite` executable, e.g. two builds of packaging/build.sh)
side by side, interleaved run by run: VERSION and a whole-network ADD + DEL (conf/10-ignite.conflist, one
port mapping) in a throwaway host netns per bundle, container netns per call, temp dataDir/stateDir
(benchmarks/chain_bench.py). --restart: what PyInstaller's onedir restart (the bootloader's execvp of
itself) costs: VERSION started normally against VERSION started with the environment the restarted
process gets (_PYI_* and LD_LIBRARY_PATH), which skips the restart. --importtime: DIR is a bundle built
with `-X importtime` (CNI_IGNITE_PY_OPTIONS="X importtime" python -m PyInstaller ... packaging/cni-ignite.spec,
see benchmarks/IMPORTS.md); the self time of every module on VERSION and on the ADD path (imported through
CNI_IGNITE_DEBUG_IMPORT), each charged to the nearest cni_ignite module that imported it, medians over runs.

Each program is started with os.posix_spawn (no subprocess overhead in the figure) with a minimal
environment, stdin from /dev/null and stdout to /dev/null; one warm-up run first. Results: median and p90
wall time, and median CPU time (user+sys, from wait4; less sensitive to a busy machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def _spawn_env(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    global ENV  # noqa: PLW0603
    saved, ENV = ENV, env
    try:
        return spawn_ms(argv)
    finally:
        ENV = saved


def _row(label: str, wall: list[float], cpu: list[float]) -> str:
    w = sorted(wall)
    return (f"| {label} | {statistics.median(w):.1f} | {w[max(0, round(0.9 * len(w)) - 1)]:.1f} | "
            f"{statistics.median(cpu):.1f} |")


def restart(runs: int) -> list[str]:
    """VERSION through dist/ignite-bridge, normally and with the post-restart environment (no restart)."""
    exe = REPO / "dist" / "cni-ignite" / "cni-ignite"
    link = REPO / "dist" / "ignite-bridge"
    pre = {**ENV, "_PYI_ARCHIVE_FILE": str(exe), "_PYI_PARENT_PROCESS_LEVEL": "-1",
           "_PYI_LINUX_PROCESS_NAME": "ignite-bridge", "LD_LIBRARY_PATH": str(exe.parent / "_internal")}
    res: dict[str, tuple[list[float], list[float]]] = {"normal start (bootloader restarts itself)": ([], []),
                                                       "post-restart environment (no restart)": ([], [])}
    for _ in range(runs + 1):
        for label, env in zip(res, (ENV, pre), strict=True):
            w, c = _spawn_env([str(link)], env)
            res[label][0].append(w)
            res[label][1].append(c)
    out = [f"| VERSION, {runs} runs, interleaved | median ms | p90 ms | CPU ms (median) |", "|---|---:|---:|---:|"]
    return out + [_row(k, w[1:], c[1:]) for k, (w, c) in res.items()]


def compare(bundles: dict[str, Path], runs: int, setns: dict[str, str] | None = None) -> list[str]:
    """VERSION, the ADD path's imports alone (CNI_IGNITE_DEBUG_IMPORT=ADD_PATH + the bundle's setns module) and
    whole-network ADD/DEL of each bundle, interleaved (needs root: network namespaces)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import chain_bench

    root = Path(tempfile.mkdtemp(prefix="startup-compare-"))
    sides, dirs = {}, {}
    wall: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        for name, bundle in bundles.items():
            d = root / f"bin-{name}"
            d.mkdir()
            (d / "ignite-bridge").symlink_to(bundle.resolve() / "cni-ignite")
            dirs[name] = d
            sides[name] = chain_bench.make_side("whole", "ours", d, root)
            chain_bench.warm_up(sides[name])
            if sides[name].warm_error:
                raise SystemExit(f"{name}: warm-up ADD failed: {sides[name].warm_error}")
        for i in range(runs):
            for name, s in sides.items():
                w, c = _spawn_env([str(dirs[name] / "ignite-bridge")], ENV)
                wall.setdefault((name, "VERSION"), []).append(w)
                cpu.setdefault((name, "VERSION"), []).append(c)
                mods = ADD_PATH + "," + (setns or {}).get(name, SETNS_MODULE)
                w, c = _spawn_env([str(dirs[name] / "ignite-bridge")],
                                  {"PATH": ENV["PATH"], "CNI_IGNITE_DEBUG_IMPORT": mods})
                wall.setdefault((name, "ADD path imports"), []).append(w)
                cpu.setdefault((name, "ADD path imports"), []).append(c)
                ctr = s.spaces.new("c")
                try:
                    att = s.att(600 + i, ctr, 8080)
                    ms, _, calls = s.add(att)
                    wall.setdefault((name, "ADD"), []).append(ms)
                    cpu.setdefault((name, "ADD"), []).append(sum(getattr(c, "cpu_ms", 0.0) for c in calls))
                    ms, calls = s.delete(att)
                    wall.setdefault((name, "DEL"), []).append(ms)
                    cpu.setdefault((name, "DEL"), []).append(sum(getattr(c, "cpu_ms", 0.0) for c in calls))
                finally:
                    s.spaces.delete(ctr)
    finally:
        for s in sides.values():
            s.close()
    out = [f"| bundle, call ({runs} runs, interleaved) | median ms | p90 ms | CPU ms (median, incl. children) |",
           "|---|---:|---:|---:|"]
    for verb in ("VERSION", "ADD path imports", "ADD", "DEL"):
        out += [_row(f"{name}: {verb}", wall[(name, verb)], cpu[(name, verb)]) for name in bundles]
    return out


ADD_PATH = ("cni_ignite.cli,cni_ignite.skel,cni_ignite.hostexec,cni_ignite.bridge.plugin,cni_ignite.bridge.kernel,"
            "cni_ignite.bridge.firewall_glue,cni_ignite.bridge.ipam_call,cni_ignite.ipam.plugin,cni_ignite.netlink.rtnl,"
            "cni_ignite.netlink.sysctl,cni_ignite.firewall.base,cni_ignite.firewall.core,cni_ignite.firewall.nftables,"
            "encodings.ascii")
# What setns loads on Python 3.11 (cni_ignite/netlink/netns.py): `_ctypes` since issue 14 part 3, `ctypes` before
# (--setns ctypes to measure an older bundle as its ADD really ran).
SETNS_MODULE = "_ctypes"


def owners(stderr: str) -> dict[str, float]:
    """-X importtime output -> self ms per owner (the nearest cni_ignite module up the import tree; modules
    imported before ours are charged to "(start-up)")."""
    pending: list[tuple[int, str, float, list[Any]]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        children = []
        while pending and pending[-1][0] == depth:
            children.insert(0, pending.pop())
        pending.append((depth - 1, name.strip(), int(self_us) / 1000, children))
    out: dict[str, float] = {}

    def walk(node: tuple[int, str, float, list[Any]], owner: str) -> None:
        _, name, ms, children = node
        owner = name if name.startswith("cni_ignite") else owner
        out[owner] = out.get(owner, 0.0) + ms
        for child in children:
            walk(child, owner)

    for root in pending:
        walk(root, "(start-up)")
    return out


def importtime(bundles: dict[str, tuple[Path, str]], runs: int) -> list[str]:
    """bundles: name -> (an -X importtime bundle, the module its setns loads). Interleaved run by run."""
    per: dict[tuple[str, str], dict[str, list[float]]] = {}
    totals: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        links = {}
        for name, (bundle, _) in bundles.items():
            (Path(tmp) / name).mkdir()
            links[name] = Path(tmp) / name / "ignite-bridge"
            links[name].symlink_to((bundle / "cni-ignite").resolve())
        for _ in range(runs):
            for name, (_, setns_module) in bundles.items():
                calls = (("VERSION", {"CNI_COMMAND": "VERSION"}),
                         ("ADD path", {"CNI_IGNITE_DEBUG_IMPORT": ADD_PATH + "," + setns_module}))
                for label, env in calls:
                    res = subprocess.run([str(links[name])], env={"PATH": ENV["PATH"], **env}, input=b"",
                                         capture_output=True, timeout=60, check=False)
                    if res.returncode != 0 or "import time:" not in res.stderr.decode():
                        raise SystemExit(f"{name} {label}: not an -X importtime bundle or failed: {res.stdout[:300]!r}")
                    split = owners(res.stderr.decode())
                    totals.setdefault((name, label), []).append(sum(split.values()))
                    for owner, ms in split.items():
                        per.setdefault((name, label), {}).setdefault(owner, []).append(ms)

    def pad(v: list[float]) -> list[float]:
        return v + [0.0] * (runs - len(v))

    low = {key: {k: min(pad(v)) for k, v in d.items()} for key, d in per.items()}
    names = list(bundles)
    out = [f"| owner (self ms of it and of the stdlib it imports first; min of {runs} interleaved runs) | "
           + " | ".join(f"{n}: VERSION | {n}: ADD path" for n in names) + " |",
           "|---|" + "---:|---:|" * len(names)]
    first = low[(names[0], "ADD path")]
    every = sorted({o for n in names for o in low[(n, "ADD path")]}, key=lambda k: -first.get(k, 0))
    for owner in every:
        out.append(f"| {owner} | " + " | ".join(f"{low[(n, 'VERSION')].get(owner, 0.0):.2f} | "
                                              f"{low[(n, 'ADD path')].get(owner, 0.0):.2f}" for n in names) + " |")
    out.append("| **all, sum of minima** | " + " | ".join(
        f"{sum(low[(n, 'VERSION')].values()):.2f} | {sum(low[(n, 'ADD path')].values()):.2f}" for n in names) + " |")
    out.append("| **all, median of per-run sums** | " + " | ".join(
        f"{statistics.median(totals[(n, 'VERSION')]):.2f} | {statistics.median(totals[(n, 'ADD path')]):.2f}"
        for n in names) + " |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=41)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--compare", nargs="+", metavar="NAME=DIR", help="bundle folders to compare (needs root)")
    ap.add_argument("--restart", action="store_true", help="what the bootloader's restart costs")
    ap.add_argument("--importtime", nargs="+", metavar="[NAME=]DIR[:SETNS_MODULE]",
                    help="-X importtime bundles, interleaved: cost per module (SETNS_MODULE default _ctypes)")
    args = ap.parse_args()
    if args.importtime:
        bundles = {}
        for spec in args.importtime:
            name, _, rest = spec.rpartition("=")
            folder, _, setns_module = rest.partition(":")
            bundles[name or Path(folder).name] = (Path(folder), setns_module or SETNS_MODULE)
        print("\n".join(importtime(bundles, args.runs)))
        return 0
    if args.compare:  # NAME=DIR[:SETNS_MODULE]
        specs = [(k, *v.partition(":")[::2]) for k, v in (c.split("=", 1) for c in args.compare)]
        print("\n".join(compare({k: Path(d) for k, d, _ in specs}, args.runs, {k: m for k, _, m in specs if m})))
        return 0
    if args.restart:
        print("\n".join(restart(args.runs)))
        return 0
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
