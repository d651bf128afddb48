"""`make bench`: ours (frozen, dist/) against Debian's Go plugins (/usr/lib/cni), side by side in one run.

    sudo .venv/bin/python benchmarks/run.py [--n 50] [--quick] [--json PATH] [--ours DIR] [--skip-SECTION ...]

Sections (each can be skipped): startup (VERSION), ipam (ADD/DEL at 0 / 1,000 / 10,000 leases), bridge
(bridge + IPAM, sequential N and concurrent), whole (the whole Ignite network: ours = one ignite-bridge
with ignite-ipam, ipMasq and a port mapping; Go = bridge + host-local -> portmap -> firewall; sequential N,
concurrent 32 / 64), density (issue 14: whole-network ADD/DEL medians per block of 100 as attachments
accumulate, bridge mode to 1,000 and routed mode to 4,000, Go's chains beside ours as far as --go-minutes
allows; draws benchmarks/density.png, see benchmarks/density_run.py), breakdown (where our ADD/DEL time
goes, in-process; child processes per call, both sides, by strace), size.

Every plugin call runs in a throwaway "host" network namespace made for the scenario (one per side),
with container namespaces, dataDirs and ours' stateDir in a temp folder; all deleted at the end, pass or
fail. Prints Markdown tables (median, p90, ours/Go) and writes JSON (default benchmarks/results/). This
is a measurement, not a test: it exits 0 whatever the figures are (non-zero only if it cannot run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import chain_bench  # noqa: E402
import density_run  # noqa: E402
import ipam_bench  # noqa: E402
from benchlib import Spaces, spawn, stats  # noqa: E402
from startup_bench import du  # noqa: E402

REPO = HERE.parent
GO = Path("/usr/lib/cni")
BASE = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
SECTIONS = ("startup", "ipam", "bridge", "whole", "density", "breakdown", "size")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- sections

def startup(ours: Path, runs: int) -> dict[str, Any]:
    """VERSION, whole process, alternating between programs; wall and peak RSS."""
    progs = {"ours ignite-bridge": ours / "ignite-bridge", "ours ignite-ipam": ours / "ignite-ipam",
             "go bridge": GO / "bridge", "go host-local": GO / "host-local", "go portmap": GO / "portmap",
             "go firewall": GO / "firewall"}
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "VERSION"}
    stdin = b'{"cniVersion":"1.1.0"}'
    wall: dict[str, list[float]] = {k: [] for k in progs}
    rss: dict[str, list[float]] = {k: [] for k in progs}
    for p in progs.values():
        spawn([str(p)], stdin=stdin, env=env)  # warm-up (page cache)
    for _ in range(runs):
        for k, p in progs.items():
            r = spawn([str(p)], stdin=stdin, env=env)
            if r.rc != 0:
                raise RuntimeError(f"{p} VERSION failed: {r.stderr.decode(errors='replace')}")
            wall[k].append(r.wall_ms)
    for _ in range(3):  # peak memory, untimed (under GNU time)
        for k, p in progs.items():
            rss[k].append(spawn([str(p)], stdin=stdin, env=env, rss=True).maxrss_kb / 1024)
    return {k: {**stats(wall[k]), "maxrss_mb": round(statistics.median(rss[k]), 1)} for k in progs}


def ipam(ours: Path, n: int, sizes: list[int], root: Path) -> dict[str, Any]:
    with Spaces(tag="cnbench") as sp, sp.entered():
        return ipam_bench.bench({"ours": str(ours / "ignite-ipam"), "go": str(GO / "host-local")}, sizes, n,
                                root / "ipam")


def sides(kind: str, ours: Path, root: Path) -> list[chain_bench.Side]:
    return [chain_bench.make_side(kind, "ours", ours, root), chain_bench.make_side(kind, "go", ours, root)]


def chain(kind: str, ours: Path, n: int, concurrency: list[int], root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ss = sides(kind, ours, root)
    try:
        log(f"{kind}: sequential N={n}")
        out["sequential"] = chain_bench.sequential(kind, ss, n)
    finally:
        for s in ss:
            s.close()
    for k in concurrency:
        out[f"concurrent_{k}"] = {}
        for name in ("ours", "go"):
            log(f"{kind}: {k} concurrent, {name}")
            s = chain_bench.make_side(kind, name, ours, root)
            try:
                out[f"concurrent_{k}"][name] = chain_bench.concurrent(kind, s, k)
            finally:
                s.close()
    return out


def density(ours: Path, a: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Issue 14's accumulation, both modes, ours and Go interleaved (benchmarks/density_run.py)."""
    return density_run.bench(ours, root, bridge_n=a.density_bridge, routed_n=a.density_routed, go_n=a.go_n,
                             go_minutes=a.go_minutes, block=a.density_block, del_order=a.del_order,
                             minutes=a.density_minutes)


def breakdown(ours: Path, runs: int, root: Path) -> dict[str, Any]:  # noqa: PLR0915
    """Ours: the in-process probe (venv Python) for ADD and DEL of the whole network, `runs` times each;
    both sides: child processes per ADD/DEL (strace)."""
    out: dict[str, Any] = {"execs": {}}
    for name in ("ours", "go"):
        s = chain_bench.make_side("whole", name, ours, root)
        try:
            chain_bench.warm_up(s)
            out["execs"][name] = chain_bench.exec_counts(s)
        except Exception as exc:
            out["execs"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
        finally:
            s.close()
    try:
        out["frozen_split"] = frozen_split(ours, max(runs * 2, 6), root)
    except Exception as exc:
        out["frozen_split"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    try:
        out["frozen_import_parts"] = frozen_import_parts(ours, max(runs, 5))
    except Exception as exc:
        out["frozen_import_parts"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    probe_out = root / "probe.jsonl"
    pycache = root / "pycache"
    env = {"BENCH_PROBE_OUT": str(probe_out), "PYTHONPYCACHEPREFIX": str(pycache)}
    s = chain_bench.make_side("whole", "ours", ours, root,
                              argv_for={"ignite-bridge": [sys.executable, "-I", str(HERE / "inproc_probe.py")]},
                              extra_env=env)
    records: list[dict[str, Any]] = []
    try:
        chain_bench.warm_up(s)  # also fills the bytecode cache, as an installed plugin has it
        probe_out.unlink(missing_ok=True)
        for i in range(runs):
            c = s.spaces.new("c")
            try:
                att = s.att(500 + i, c, 8080)
                try:
                    s.add(att)
                finally:
                    s.delete(att)
            finally:
                s.spaces.delete(c)
        records = [json.loads(line) for line in probe_out.read_text().splitlines()] if probe_out.exists() else []
    except Exception as exc:
        out["probe_error"] = f"{type(exc).__name__}: {str(exc)[:600]}"
        records = [json.loads(line) for line in probe_out.read_text().splitlines()] if probe_out.exists() else []
    finally:
        s.close()
    for verb in ("ADD", "DEL"):
        recs = [r for r in records if r["command"] == verb]
        if not recs:
            continue
        phases = sorted({p for r in recs for p in r["phases_ms"]})
        execs = [r["execs"] for r in recs]
        out[verb] = {
            "n": len(recs), "failures": sum(1 for r in recs if r["rc"] != 0),
            "import_entry_ms": round(statistics.median(r["import_entry_ms"] for r in recs), 2),
            "import_path_ms": round(statistics.median(r["import_path_ms"] for r in recs), 2),
            "run_ms": round(statistics.median(r["run_ms"] for r in recs), 2),
            "phases_ms": {p: round(statistics.median(r["phases_ms"].get(p, 0.0) for r in recs), 2) for p in phases},
            "execs_per_call": statistics.median(len(e) for e in execs),
            "exec_ms_per_call": round(statistics.median(sum(x["ms"] for x in e) for e in execs), 2),
            "exec_programs": sorted({x["program"] for e in execs for x in e}),
            "modules_imported_during_run": recs[-1]["modules_imported_during_run"][:40],
            "firewall_import_errors": recs[-1]["firewall_import_errors"],
        }
    return out


# The modules a whole-network ADD imports, in the order it does (-X importtime of a real ADD; the firewall
# backend and encodings.ascii are imported lazily during the call). Same list as startup_bench.ADD_PATH.
# ctypes is no longer loaded by the bootstrap (packaging/boot.py): it now shows up here, not at start-up.
ADD_PATH = ("cni_ignite.cli,cni_ignite.skel,cni_ignite.hostexec,cni_ignite.bridge.plugin,cni_ignite.bridge.kernel,"
            "cni_ignite.bridge.firewall_glue,cni_ignite.bridge.ipam_call,cni_ignite.ipam.plugin,"
            "cni_ignite.netlink.rtnl,cni_ignite.netlink.sysctl,cni_ignite.firewall.base,cni_ignite.firewall.core,"
            "cni_ignite.firewall.nftables,ctypes,encodings.ascii")


def frozen_split(ours: Path, runs: int, root: Path) -> dict[str, Any]:
    """The frozen whole-network ADD/DEL next to its parts, interleaved so that machine noise hits all alike:
    VERSION (process start), the import of the ADD path through the bundle's existing test switch
    CNI_IGNITE_DEBUG_IMPORT (import the listed modules, print, exit) minus a run importing only skel (both
    pay the bootloader, importlib and json alike), and the real ADD and DEL."""
    exe = [str(ours / "ignite-bridge")]
    wall: dict[str, list[float]] = {"VERSION": [], "imports baseline (skel)": [], "imports ADD path": [],
                                    "ADD": [], "DEL": []}
    s = chain_bench.make_side("whole", "ours", ours, root)
    try:
        chain_bench.warm_up(s)
        for i in range(runs):
            r = spawn(exe, stdin=b'{"cniVersion":"1.1.0"}', env={**BASE, "CNI_COMMAND": "VERSION"})
            wall["VERSION"].append(r.wall_ms)
            for label, mods in (("imports baseline (skel)", "cni_ignite.skel"), ("imports ADD path", ADD_PATH)):
                r = spawn(exe, env={**BASE, "CNI_IGNITE_DEBUG_IMPORT": mods})
                if r.rc != 0:
                    raise RuntimeError(f"frozen import check failed: {r.stdout.decode(errors='replace')[:300]}")
                wall[label].append(r.wall_ms)
            c = s.spaces.new("c")
            try:
                att = s.att(700 + i, c, 8080)
                wall["ADD"].append(s.add(att)[0])
                wall["DEL"].append(s.delete(att)[0])
            finally:
                s.spaces.delete(c)
    finally:
        s.close()
    out: dict[str, Any] = {k: stats(v) for k, v in wall.items()}
    out["ADD path minus baseline_ms"] = round(statistics.median(wall["imports ADD path"]) -
                                             statistics.median(wall["imports baseline (skel)"]), 2)
    return out


IMPORT_PARTS = {
    "netlink (rtnl + sysctl)": "cni_ignite.netlink.rtnl,cni_ignite.netlink.sysctl",
    "firewall (core, both backends, state)": "cni_ignite.firewall.core",
    "IPAM (cni_ignite.ipam.plugin)": "cni_ignite.ipam.plugin",
    "bridge plugin + config + result": "cni_ignite.bridge.plugin",
    "cli + hostexec": "cni_ignite.cli,cni_ignite.hostexec",
    "ctypes (setns on Python 3.11)": "ctypes",
}


def frozen_import_parts(ours: Path, runs: int) -> dict[str, Any]:
    """Each group of the ADD path imported alone in the frozen bundle, minus the skel-only baseline
    (groups share dependencies, so the parts add up to more than the whole)."""
    exe = [str(ours / "ignite-bridge")]
    wall: dict[str, list[float]] = {k: [] for k in ["baseline", *IMPORT_PARTS]}
    for _ in range(runs):
        for label, mods in [("baseline", ""), *IMPORT_PARTS.items()]:
            names = f"cni_ignite.skel,{mods}".rstrip(",")
            wall[label].append(spawn(exe, env={**BASE, "CNI_IGNITE_DEBUG_IMPORT": names}).wall_ms)
    base = statistics.median(wall["baseline"])
    return {k: round(statistics.median(v) - base, 2) for k, v in wall.items() if k != "baseline"}


def size(ours: Path) -> dict[str, Any]:
    bundle = (ours / "cni-ignite").resolve()
    go = {p: du(GO / p) for p in ("bridge", "host-local", "portmap", "firewall")}
    return {"ours_bundle_mb": round(du(bundle) / 1e6, 1),
            "ours_files": sum(1 for p in bundle.rglob("*") if p.is_file()),
            "go_chain_mb": round(sum(go.values()) / 1e6, 1),
            "go_plugins_mb": {k: round(v / 1e6, 1) for k, v in go.items()}}


# ------------------------------------------------------------------------------------------- report

def _m(d: Any, *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return math.nan
        d = d[k]
    return float(d) if isinstance(d, (int, float)) else math.nan


def _fmt(x: float, unit: str = "ms") -> str:
    return "—" if math.isnan(x) else f"{x:.1f} {unit}" if unit else f"{x:.2f}"


def _ratio(a: float, b: float) -> str:
    return "—" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}"


def _leaks(d: dict[str, Any]) -> int:
    return sum(len(v) for v in (d.get("leaks") or {}).values())


def report(res: dict[str, Any]) -> str:  # noqa: PLR0912, PLR0915
    lines = ["| scenario | verb | ours median | ours p90 | Go median | Go p90 | ours/Go |",
             "|---|---|---:|---:|---:|---:|---:|"]

    def row(scen: str, verb: str, o: Any, g: Any) -> None:
        om, op, gm, gp = _m(o, "median_ms"), _m(o, "p90_ms"), _m(g, "median_ms"), _m(g, "p90_ms")
        lines.append(f"| {scen} | {verb} | {_fmt(om)} | {_fmt(op)} | {_fmt(gm)} | {_fmt(gp)} | {_ratio(om, gm)} |")

    st = res.get("startup") or {}
    if "error" not in st and st:
        row("VERSION start-up", "ignite-bridge vs bridge", st.get("ours ignite-bridge"), st.get("go bridge"))
        row("VERSION start-up", "ignite-ipam vs host-local", st.get("ours ignite-ipam"), st.get("go host-local"))
    ip = res.get("ipam") or {}
    for sz in (k for k in ip if k != "error"):
        for verb in ("ADD", "DEL"):
            row(f"IPAM, {int(sz):,} leases", verb, ip[sz]["ours"][verb], ip[sz]["go"][verb])
    for kind, label in (("bridge", "bridge + IPAM (ipMasq)"), ("whole", "whole Ignite network")):
        seq = (res.get(kind) or {}).get("sequential") or {}
        if seq:
            n = max(_m(seq, "ours", "ADD", "n"), _m(seq, "go", "ADD", "n"))
            for verb in ("ADD", "DEL"):
                row(f"{label}, sequential (N={n:.0f})", verb, seq["ours"][verb], seq["go"][verb])
            for verb in ("ADD", "DEL"):
                row("… CPU time of those calls (user+sys, incl. children)", verb, seq["ours"]["cpu_ms"][verb],
                    seq["go"]["cpu_ms"][verb])
    out = ["\n".join(lines), ""]

    conc = ["| concurrent | verb | ours total | Go total | ours/Go | failures ours / Go | duplicates ours / Go "
            "| leaks ours / Go |", "|---|---|---:|---:|---:|---|---|---|"]
    for kind in ("bridge", "whole"):
        for key, val in sorted((res.get(kind) or {}).items()):
            if not key.startswith("concurrent_"):
                continue
            o, g = val.get("ours", {}), val.get("go", {})
            for verb in ("ADD", "DEL"):
                ot, gt = _m(o, f"{verb}_total_s"), _m(g, f"{verb}_total_s")
                lines_f = f"{o.get(f'{verb}_failures', '—')} / {g.get(f'{verb}_failures', '—')}"
                dup = f"{o.get('duplicates', '—')} / {g.get('duplicates', '—')}" if verb == "ADD" else ""
                lk = f"{_leaks(o)} / {_leaks(g)}" if verb == "DEL" else ""
                conc.append(f"| {kind}, {val.get('ours', {}).get('k', key[11:])} at once | {verb} | {_fmt(ot, 's')} "
                            f"| {_fmt(gt, 's')} | {_ratio(ot, gt)} | {lines_f} | {dup} | {lk} |")
    if len(conc) > 2:
        out += ["\n".join(conc), ""]

    dens = res.get("density") or {}
    if "error" not in dens and any(m in dens for m in ("bridge", "routed")):
        out += [density_run.report(dens, res.get("meta", {}).get("density_every", 500)), ""]

    mem = ["| peak RSS per call (median of ru_maxrss) | ours | Go |", "|---|---:|---:|"]
    if st and "error" not in st:
        mem.append(f"| VERSION (ignite-bridge / bridge) | {_fmt(_m(st, 'ours ignite-bridge', 'maxrss_mb'), 'MB')} "
                   f"| {_fmt(_m(st, 'go bridge', 'maxrss_mb'), 'MB')} |")
    if ip and "error" not in ip:
        hi = max(ip, key=int)
        mem.append(f"| IPAM ADD at {int(hi):,} leases | {_fmt(_m(ip, hi, 'ours', 'ADD', 'maxrss_mb'), 'MB')} "
                   f"| {_fmt(_m(ip, hi, 'go', 'ADD', 'maxrss_mb'), 'MB')} |")
    for kind in ("bridge", "whole"):
        seq = (res.get(kind) or {}).get("sequential") or {}
        for verb in ("ADD", "DEL"):
            if seq:
                mem.append(f"| {kind} {verb} (largest process of the chain) "
                           f"| {_fmt(_m(seq, 'ours', 'maxrss_mb', verb, 'median_ms'), 'MB')} "
                           f"| {_fmt(_m(seq, 'go', 'maxrss_mb', verb, 'median_ms'), 'MB')} |")
    if len(mem) > 2:
        out += ["\n".join(mem), ""]

    sz = res.get("size") or {}
    if sz and "error" not in sz:
        go = ", ".join(f"{k} {v}" for k, v in sz["go_plugins_mb"].items())
        out += [f"Bundle size: ours {sz['ours_bundle_mb']} MB ({sz['ours_files']} files, one bundle for both "
                f"plugins); Go chain {sz['go_chain_mb']} MB ({go}).", ""]

    bd = res.get("breakdown") or {}
    if bd:
        b = ["Where ours spends an ADD/DEL (in-process probe, venv Python; medians):", "",
             "| part | ADD | DEL |", "|---|---:|---:|"]
        add, dele = bd.get("ADD") or {}, bd.get("DEL") or {}
        for key, label in (("import_entry_ms", "import cli + skel (also on VERSION)"),
                           ("import_path_ms", "import the ADD/DEL path (bridge, netlink, IPAM, firewall)"),
                           ("run_ms", "the call itself (skel.run)")):
            b.append(f"| {label} | {_fmt(_m(add, key))} | {_fmt(_m(dele, key))} |")
        for p in sorted(set(add.get("phases_ms", {})) | set(dele.get("phases_ms", {}))):
            b.append(f"| … {p} | {_fmt(_m(add, 'phases_ms', p))} | {_fmt(_m(dele, 'phases_ms', p))} |")
        b.append(f"| … programs exec'd (count; ms) | {add.get('execs_per_call', '—')}; "
                 f"{_fmt(_m(add, 'exec_ms_per_call'))} | {dele.get('execs_per_call', '—')}; "
                 f"{_fmt(_m(dele, 'exec_ms_per_call'))} |")
        ex = bd.get("execs") or {}
        for name in ("ours", "go"):
            e = ex.get(name) or {}
            if "error" in e:
                b.append(f"| child processes, {name} | {e['error'][:80]} | |")
            elif e:
                cell = [f"{e[v]['plugin_processes']} + {e[v]['child_processes']}"
                        + (f" (+{e[v]['bootloader_restarts']} bootloader restart)" if e[v].get("bootloader_restarts")
                           else "") for v in ("ADD", "DEL")]
                b.append(f"| plugin processes + child processes, {name} | {cell[0]} | {cell[1]} |")
        out += ["\n".join(b), ""]
        fs = bd.get("frozen_split") or {}
        if "error" not in fs and fs:
            d = ["The frozen whole-network call, split (parts measured interleaved with the calls, "
                 f"n={fs['ADD']['n']}; medians):", "", "| part | ADD | DEL |", "|---|---:|---:|"]
            total = {v: _m(fs, v, "median_ms") for v in ("ADD", "DEL")}
            start, fi = _m(fs, "VERSION", "median_ms"), _m(fs, "ADD path minus baseline_ms")
            work = {"ADD": _m(add, "run_ms"), "DEL": _m(dele, "run_ms")}
            d.append(f"| frozen call, whole process | {_fmt(total['ADD'])} | {_fmt(total['DEL'])} |")
            d.append(f"| … process start (VERSION: bootloader, its restart, interpreter, skel) | {_fmt(start)} "
                     f"| {_fmt(start)} |")
            d.append(f"| … imports of the call's path, frozen (bridge, netlink, IPAM, firewall, ctypes) "
                     f"| {_fmt(fi)} | {_fmt(fi)} |")
            d.append(f"| … the call's own work (in-process probe above) | {_fmt(work['ADD'])} | {_fmt(work['DEL'])} |")
            rest = {v: total[v] - start - work[v] - fi for v in ("ADD", "DEL")}
            d.append(f"| … rest (total minus the three; exit, first-use costs, noise) | {_fmt(rest['ADD'])} "
                     f"| {_fmt(rest['DEL'])} |")
            parts = bd.get("frozen_import_parts") or {}
            if parts and "error" not in parts:
                d += ["", "Frozen import of each group alone (minus the skel-only run; shared dependencies "
                      "are counted in each):", "", "| group | ms |", "|---|---:|"]
                d += [f"| {k} | {v:.1f} |" for k, v in parts.items()]
            out += ["\n".join(d), ""]

    out += targets(res)
    return "\n".join(out)


def targets(res: dict[str, Any]) -> list[str]:
    t = ["Targets:"]
    seq = (res.get("whole") or {}).get("sequential") or {}
    for verb in ("ADD", "DEL"):
        o, g = _m(seq, "ours", verb, "median_ms"), _m(seq, "go", verb, "median_ms")
        r = o / g if g and not math.isnan(o) else math.nan
        verdict = "—" if math.isnan(r) else ("met" if r <= 1.0 else "MISSED") + (" (≤ 0.5x: yes)" if r <= 0.5 else "")
        t.append(f"- whole-network {verb} median ≤ 1.0x Go: {_ratio(o, g)} → {verdict}")
    c = (res.get("whole") or {}).get("concurrent_64") or {}
    if c:
        o, g = c.get("ours", {}), c.get("go", {})
        ok = all(_m(o, f"{v}_total_s") <= _m(g, f"{v}_total_s") for v in ("ADD", "DEL"))
        clean = o.get("ADD_failures") == 0 and o.get("DEL_failures") == 0 and o.get("duplicates") == 0 and not _leaks(o)
        t.append(f"- 64 concurrent total wall ≤ Go's (ADD {_fmt(_m(o, 'ADD_total_s'), 's')} vs "
                 f"{_fmt(_m(g, 'ADD_total_s'), 's')}, DEL {_fmt(_m(o, 'DEL_total_s'), 's')} vs "
                 f"{_fmt(_m(g, 'DEL_total_s'), 's')}) with 0 failures/duplicates/leaks: "
                 f"{'met' if ok and clean else 'MISSED'}")
    ip = res.get("ipam") or {}
    if ip and "error" not in ip:
        lo, hi = min(ip, key=int), max(ip, key=int)
        for verb in ("ADD", "DEL"):
            r = _m(ip, hi, "ours", verb, "median_ms") / _m(ip, lo, "ours", verb, "median_ms")
            t.append(f"- IPAM {verb} at {int(hi):,} leases ≤ 1.2x ours at {int(lo):,}: {r:.2f} → "
                     f"{'met' if r <= 1.2 else 'MISSED'}")
    return [*t, ""]


# ------------------------------------------------------------------------------------------- main

def density_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--density-bridge", type=int, default=1000, help="density: bridge mode up to N attachments")
    ap.add_argument("--density-routed", type=int, default=4000, help="density: routed mode up to N attachments")
    ap.add_argument("--go-n", type=int, help="density: Go stops at N attachments (default: as far as ours)")
    ap.add_argument("--go-minutes", type=float, default=6.0,
                    help="density: ... or once its ADDs took this long, per mode (default 6)")
    ap.add_argument("--density-minutes", type=float, default=math.inf,
                    help="density: per mode, stop accumulating at the first block boundary after this many minutes")
    ap.add_argument("--density-block", type=int, default=100, help="density: medians per block of N (default 100)")
    ap.add_argument("--del-order", choices=("reverse", "random"), default="reverse", help="density: DEL order")
    ap.add_argument("--png", default=str(HERE / "density.png"), help="density curves ('' for none; --quick: none)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="sequential ADD+DEL pairs per side (default 50)")
    ap.add_argument("--quick", action="store_true", help="tiny N everywhere (keeps the benchmark working in make test)")
    ap.add_argument("--json", help="write results here (default benchmarks/results/bench-<time>.json)")
    ap.add_argument("--ours", default=str(REPO / "dist"), help="folder with ignite-bridge, ignite-ipam (default dist/)")
    ap.add_argument("--concurrency", default="32,64", help="concurrent ADD/DEL batch sizes (default 32,64)")
    ap.add_argument("--bridge-concurrency", default="32", help="for bridge + IPAM (default 32)")
    density_args(ap)
    ap.add_argument("--sizes", default="0,1000,10000", help="IPAM lease counts")
    ap.add_argument("--runs", type=int, default=41, help="VERSION runs per program")
    ap.add_argument("--probe-runs", type=int, default=10, help="in-process breakdown runs")
    for sec in SECTIONS:
        ap.add_argument(f"--skip-{sec}", action="store_true", help=f"skip the {sec} section")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/run.py needs root (network namespaces)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, density_run.sigterm)  # cleans up like Ctrl-C: every namespace, temp dir
    ours = Path(a.ours).resolve()
    if a.quick:
        a.n, a.runs, a.probe_runs = 3, 5, 2
        a.concurrency, a.bridge_concurrency, a.sizes = "4", "4", "0,10,100"
        a.density_bridge, a.density_routed, a.density_block, a.go_minutes = 8, 8, 4, 1.0
        if a.png == str(HERE / "density.png"):
            a.png = ""  # the quick profile never overwrites the recorded curves
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    res: dict[str, Any] = {"meta": {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_start": os.getloadavg(), "cpus": os.cpu_count(), "ours": str(ours), "go": str(GO),
        "python": sys.version.split()[0], "n": a.n, "quick": a.quick,
        "density_every": a.density_block if a.quick else 500}}
    with tempfile.TemporaryDirectory(prefix="cni-bench-") as tmp:
        root = Path(tmp)
        plan = [
            ("size", lambda: size(ours)),
            ("startup", lambda: startup(ours, a.runs)),
            ("ipam", lambda: ipam(ours, a.n, ints(a.sizes), root)),
            ("bridge", lambda: chain("bridge", ours, a.n, ints(a.bridge_concurrency), root)),
            ("whole", lambda: chain("whole", ours, a.n, ints(a.concurrency), root)),
            ("density", lambda: density(ours, a, root)),
            ("breakdown", lambda: breakdown(ours, a.probe_runs, root)),
        ]
        for name, fn in plan:
            if getattr(a, f"skip_{name}"):
                continue
            log(f"section {name}")
            t0 = time.perf_counter()
            try:
                res[name] = fn()
            except Exception as exc:
                traceback.print_exc()
                res[name] = {"error": f"{type(exc).__name__}: {str(exc)[:600]}"}
            res["meta"][f"{name}_s"] = round(time.perf_counter() - t0, 1)
    res["meta"]["loadavg_end"] = os.getloadavg()
    text = report(res)
    print(text)
    if a.png and "density" in res and "error" not in res["density"]:
        log(density_run.plot(res["density"], Path(a.png)))
    path = Path(a.json) if a.json else HERE / "results" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"JSON written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
