"""Chain benchmarks: ours (ignite-bridge, one plugin) against the Go chain, through conformance's libcni-like
Runtime, every call inside a throwaway "host" netns (one per side and scenario) with temp dataDirs.

Scenarios (functions used by benchmarks/run.py; this module has no CLI of its own):

- ``sequential``: one container at a time, ADD then DEL, N times, the two sides alternating;
- ``concurrent``: K containers ADDed at once (K threads), then DELed at once; total wall, failures,
  duplicate addresses and leaks (links, rules, leases, rule state left after the DELs);
- ``accumulate``: ADD containers 1..M without DEL (latency of the Nth ADD as attachments accumulate),
  then DEL them all;
- ``exec_counts``: child processes started per ADD/DEL (``strace -f -e trace=execve``).

The plugins are spawned directly (posix_spawn + wait4, no ``ip netns exec`` in the timing) by a thread
that entered the host netns. Wall time of a verb = the whole chain as the runtime runs it.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import Spaces, spawn, stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from conformance.driver import Attachment, Call, ChainError, Runtime  # noqa: E402

GO_DIR = Path("/usr/lib/cni")
_LEASE = re.compile(r"^[0-9a-fA-F.:]+$")
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")
_NFT_HANDLE = re.compile(r"\s*# handle \d+")


@dataclass
class TimedCall(Call):
    wall_ms: float = 0.0
    maxrss_kb: int = 0
    cpu_ms: float = 0.0  # user+sys of the plugin process and the children it waited for


@dataclass
class TimedRuntime(Runtime):
    """Runtime whose execs are timed with wait4 and run in the calling thread's netns (no ip netns exec)."""

    prefix: list[str] = field(default_factory=list)      # e.g. strace
    argv_for: dict[str, list[str]] = field(default_factory=dict)  # plugin type -> argv (in-process probe)
    extra_env: dict[str, str] = field(default_factory=dict)
    rss: bool = False  # measure each plugin's peak RSS (under GNU time; such calls are not timed)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def exec(self, plugin_type: str, command: str, stdin: bytes | str | dict[str, Any], *,
             env: dict[str, str] | None = None, att: Attachment | None = None,
             unset: tuple[str, ...] = ()) -> Call:
        full, raw = self.request(command, stdin, env={**self.extra_env, **(env or {})}, att=att, unset=unset)
        argv = [*self.prefix, *(self.argv_for.get(plugin_type) or [str(self.find(plugin_type))])]
        p = spawn(argv, stdin=raw, env=full, timeout=self.timeout, rss=self.rss)
        so, se = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        try:
            out = json.loads(so) if so.strip() else None
        except ValueError:
            out = None
        call = TimedCall(plugin_type, command, p.rc, so, se, out, "", p.wall_ms, p.maxrss_kb, p.cpu_ms)
        with self._lock:
            self.log.append(call)
        return call

    def _cache_add(self, netlist: dict[str, Any], att: Attachment, result: Any) -> None:
        with self._lock:  # parent folder creation races between threads otherwise (harmless, but keep it tidy)
            super()._cache_add(netlist, att, result)


# ------------------------------------------------------------------------------------------- sides

@dataclass
class Side:
    """One implementation in one scenario: its conflist (temp dirs patched in), runtime and namespaces."""

    name: str  # "ours" | "go"
    netlist: dict[str, Any]
    runtime: TimedRuntime
    spaces: Spaces
    tmp: Path
    data_dir: Path
    state_dir: Path | None
    baseline: dict[str, list[str]] = field(default_factory=dict)
    warm_error: str = ""

    def att(self, k: int, netns: str, port: int | None) -> Attachment:
        caps = {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]} if port else {}
        return Attachment(f"bench{self.name}{k:05d}", f"/var/run/netns/{netns}", "eth0", caps)

    def add(self, att: Attachment) -> tuple[float, Any, list[Call]]:
        with self.spaces.entered():
            t0 = time.perf_counter()
            result, calls = self.runtime.add(self.netlist, att)
            return (time.perf_counter() - t0) * 1000, result, calls

    def delete(self, att: Attachment) -> tuple[float, list[Call]]:
        with self.spaces.entered():
            t0 = time.perf_counter()
            calls = self.runtime.delete(self.netlist, att)
            return (time.perf_counter() - t0) * 1000, calls

    def close(self) -> None:
        self.spaces.close()


def conflist(kind: str, side: str, data_dir: Path, state_dir: Path | None) -> dict[str, Any]:
    """kind: "whole" (Ignite's network) or "bridge" (bridge + IPAM, ipMasq as Ignite's, no port mapping)."""
    path = REPO / ("conf/10-ignite.conflist" if side == "ours" else "conformance/ignite-reference.conflist")
    doc: dict[str, Any] = json.loads(path.read_text())
    doc.pop("cniVersions", None)
    first = doc["plugins"][0]
    first["ipam"]["dataDir"] = str(data_dir)
    if side == "ours":
        first["stateDir"] = str(state_dir)
    if kind == "bridge":
        doc["plugins"] = [first]
        first.pop("capabilities", None)
        if side == "ours":
            first["forward"] = False  # the Go bridge adds no FORWARD rules: compare the same work
    return doc


def make_side(kind: str, side: str, ours_dir: Path, root: Path, *, prefix: list[str] | None = None,
              argv_for: dict[str, list[str]] | None = None, extra_env: dict[str, str] | None = None,
              tag: str = "cnbench") -> Side:
    """tag: the prefix of the side's namespaces (``<tag>-h-…``, ``<tag>-c-…``)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{side}-{kind}-", dir=root))
    data_dir, state_dir = tmp / "ipam", (tmp / "state" if side == "ours" else None)
    netlist = conflist(kind, side, data_dir, state_dir)
    rt = TimedRuntime([ours_dir if side == "ours" else GO_DIR], "", tmp / "cache", timeout=120,
                      prefix=prefix or [], argv_for=argv_for or {}, extra_env=extra_env or {})
    spaces = Spaces(tag=tag)
    spaces.__enter__()
    return Side(side, netlist, rt, spaces, tmp, data_dir, state_dir)


# ------------------------------------------------------------------------------------------- leaks

def snapshot(side: Side) -> dict[str, list[str]]:
    """What the host netns and the side's dirs hold: links, rules (no counters/handles), leases, state."""
    with side.spaces.entered():
        links = [ln["ifname"] for ln in json.loads(spawn(["/usr/sbin/ip", "-j", "link"]).stdout or b"[]")
                 if ln["ifname"] not in {"lo", "ignite0"}]
        rules: list[str] = []
        for argv in (["/usr/sbin/iptables-save"], ["/usr/sbin/ip6tables-save"], ["/usr/sbin/nft", "list", "ruleset"]):
            text = spawn(argv).stdout.decode(errors="replace")
            for raw in text.splitlines():
                line = _NFT_HANDLE.sub("", _COUNTERS.sub("", raw)).strip()
                if line and not line.startswith("#"):
                    rules.append(f"{Path(argv[0]).name}: {line}")
    net = side.netlist["name"]
    lease_dir = side.data_dir / net
    # A sticky hold (the default network keeps a released address for its owner) is not a leaked lease.
    leases = sorted(p.name for p in lease_dir.iterdir() if _LEASE.match(p.name)
                    and not p.read_bytes().startswith(b"_ignite_")) if lease_dir.is_dir() else []
    state = sorted(str(p.relative_to(side.state_dir)) for p in side.state_dir.rglob("*") if p.is_file()) \
        if side.state_dir and side.state_dir.is_dir() else []
    return {"links": links, "rules": rules, "leases": leases, "state": state}


def leaks(side: Side) -> dict[str, list[str]]:
    """Everything present now that was not there after the warm-up ADD+DEL (baseline)."""
    now = snapshot(side)
    base = side.baseline
    out = {"links": now["links"], "leases": now["leases"],
           "rules": [r for r in now["rules"] if r not in set(base.get("rules", []))],
           "state": [s for s in now["state"] if s not in set(base.get("state", []))]}
    return {k: v for k, v in out.items() if v}


def warm_up(side: Side) -> None:
    """One untimed ADD+DEL (bridge, base chains and indexes exist afterwards), then the leak baseline."""
    c = side.spaces.new("c")
    att = side.att(99999, c, 18999)  # the port mapping reaches only plugins that declare the capability
    try:
        side.add(att)
        side.delete(att)
    except ChainError as exc:  # recorded; the timed calls will fail the same way and be counted
        side.warm_error = str(exc)[:300]
        with suppress(ChainError):
            side.delete(att)
    finally:
        side.spaces.delete(c)
    side.baseline = snapshot(side)


def _ips(result: Any) -> list[str]:
    return [ip["address"].split("/")[0] for ip in (result or {}).get("ips", [])]


def _rss(calls: list[Call]) -> int:
    return max((c.maxrss_kb for c in calls if isinstance(c, TimedCall)), default=0)


def _cpu(calls: list[Call]) -> float:
    return sum(c.cpu_ms for c in calls if isinstance(c, TimedCall))


def _per_plugin(calls: list[Call], into: dict[str, dict[str, list[float]]], memory: bool) -> None:
    for c in calls:
        if isinstance(c, TimedCall):
            rec = into.setdefault(f"{c.plugin} {c.command}", {"wall": [], "rss": []})
            if memory:
                rec["rss"].append(c.maxrss_kb / 1024)
            else:
                rec["wall"].append(c.wall_ms)


def _ports(kind: str) -> bool:
    return kind == "whole"


# ------------------------------------------------------------------------------------------- scenarios

def _one(s: Side, k: int, kind: str, rec: dict[str, Any], *, memory: bool = False) -> None:
    """ADD then DEL of one fresh container; wall times (or, with memory, peak RSS) go to rec."""
    c = s.spaces.new("c")
    att = s.att(k, c, 8080 if _ports(kind) else None)
    s.runtime.rss = memory
    try:
        ms, _, calls = s.add(att)
        rec["rss_ADD" if memory else "ADD"].append(_rss(calls) / 1024 if memory else ms)
        if not memory:
            rec["cpu_ADD"].append(_cpu(calls))
        _per_plugin(calls, rec["plugins"], memory)
        ms, calls = s.delete(att)
        rec["rss_DEL" if memory else "DEL"].append(_rss(calls) / 1024 if memory else ms)
        if not memory:
            rec["cpu_DEL"].append(_cpu(calls))
        _per_plugin(calls, rec["plugins"], memory)
    except ChainError as exc:
        rec["failures"] += 1
        rec.setdefault("errors", []).append(str(exc)[:300])
        with suppress(ChainError):
            s.delete(att)
    finally:
        s.runtime.rss = False
        s.spaces.delete(c)


def sequential(kind: str, sides: list[Side], n: int, memory_runs: int = 3) -> dict[str, Any]:
    """N x (ADD, DEL) of one container at a time, the sides alternating; then a few untimed calls for RSS."""
    samples = {s.name: {"ADD": [], "DEL": [], "rss_ADD": [], "rss_DEL": [], "cpu_ADD": [], "cpu_DEL": [],
                        "failures": 0, "plugins": {}}
               for s in sides}
    for s in sides:
        warm_up(s)
    for k in range(n):
        for s in (sides if k % 2 == 0 else list(reversed(sides))):
            _one(s, k, kind, samples[s.name])
    for k in range(memory_runs):
        for s in sides:
            _one(s, 5000 + k, kind, samples[s.name], memory=True)
    out: dict[str, Any] = {}
    for s in sides:
        rec = samples[s.name]
        out[s.name] = {"ADD": stats(rec["ADD"]), "DEL": stats(rec["DEL"]), "failures": rec["failures"],
                       "cpu_ms": {"ADD": stats(rec["cpu_ADD"]), "DEL": stats(rec["cpu_DEL"])},
                       "maxrss_mb": {"ADD": stats(rec["rss_ADD"]), "DEL": stats(rec["rss_DEL"])},
                       "plugins": {p: {"wall": stats(v["wall"]), "maxrss_mb": stats(v["rss"])}
                                   for p, v in rec["plugins"].items()},
                       "leaks": leaks(s), "errors": rec.get("errors", [])[:3], "warm_error": s.warm_error}
    return out


def concurrent(kind: str, side: Side, k: int) -> dict[str, Any]:
    """K ADDs at once, then K DELs at once; total wall each, failures, duplicates, leaks."""
    if not side.baseline:
        warm_up(side)
    names = [side.spaces.new("c") for _ in range(k)]
    atts = [side.att(10000 + i, c, 20000 + i if _ports(kind) else None) for i, c in enumerate(names)]
    errors: list[str] = []
    results: list[Any] = []

    def one_add(att: Attachment) -> None:
        try:
            _, result, _ = side.add(att)
            results.append(result)
        except ChainError as exc:
            errors.append(f"ADD {att.container_id}: {str(exc)[:300]}")

    def one_del(att: Attachment) -> None:
        try:
            side.delete(att)
        except ChainError as exc:
            errors.append(f"DEL {att.container_id}: {str(exc)[:300]}")

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(one_add, atts))
        add_wall = time.perf_counter() - t0
        ips = [ip for r in results for ip in _ips(r)]
        dups = len(ips) - len(set(ips))
        add_failures = len(errors)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(one_del, atts))
        del_wall = time.perf_counter() - t0
    finally:
        for c in names:
            side.spaces.delete(c)
    return {"k": k, "ADD_total_s": round(add_wall, 3), "DEL_total_s": round(del_wall, 3),
            "ADD_failures": add_failures, "DEL_failures": len(errors) - add_failures, "duplicates": dups,
            "addresses": len(ips),
            "leaks": leaks(side), "errors": errors[:3]}


def _slope(xs: list[float]) -> float:
    """Least squares: ms per extra existing attachment, over every ADD."""
    ok = [(i, x) for i, x in enumerate(xs) if not math.isnan(x)]
    if len(ok) < 3:
        return math.nan
    mi, mx = statistics.fmean(i for i, _ in ok), statistics.fmean(x for _, x in ok)
    var = sum((i - mi) ** 2 for i, _ in ok)
    return sum((i - mi) * (x - mx) for i, x in ok) / var if var else math.nan


def accumulate(sides: list[Side], checkpoints: list[int]) -> dict[str, Any]:
    """ADD 1..max(checkpoints) containers (none deleted), alternating sides; latency of the Nth ADD."""
    m = max(checkpoints)
    for s in sides:
        if not s.baseline:
            warm_up(s)
    lat: dict[str, list[float]] = {s.name: [] for s in sides}
    dels: dict[str, list[float]] = {s.name: [] for s in sides}
    atts: dict[str, list[tuple[Attachment, str]]] = {s.name: [] for s in sides}
    failures = {s.name: 0 for s in sides}
    try:
        for i in range(1, m + 1):
            for s in sides:
                c = s.spaces.new("c")
                att = s.att(i, c, 30000 + i)
                atts[s.name].append((att, c))
                try:
                    ms, _, _ = s.add(att)
                    lat[s.name].append(ms)
                except ChainError:
                    failures[s.name] += 1
                    lat[s.name].append(float("nan"))
        for i in range(m):
            for s in sides:
                att, _ = atts[s.name][m - 1 - i]
                try:
                    ms, _ = s.delete(att)
                    dels[s.name].append(ms)
                except ChainError:
                    failures[s.name] += 1
    finally:
        for s in sides:
            for _, c in atts[s.name]:
                s.spaces.delete(c)
    out: dict[str, Any] = {"checkpoints": checkpoints}
    for s in sides:
        xs = lat[s.name]
        window = {str(n): stats([x for x in xs[max(0, n - 5):n] if not math.isnan(x)]) for n in checkpoints}
        slope = _slope(xs)
        out[s.name] = {"ADD_at": window, "ADD_nth_ms": {str(n): round(xs[n - 1], 2) for n in checkpoints},
                       "ADD_all_ms": [round(x, 2) for x in xs],
                       "ADD_slope_ms_per_100": round(slope * 100, 2) if not math.isnan(slope) else None,
                       "DEL_all": stats(dels[s.name]), "failures": failures[s.name], "leaks": leaks(s)}
    return out


def exec_counts(side: Side) -> dict[str, Any]:
    """Children each plugin process starts per ADD and DEL, counted with strace -f (one untimed call each)."""
    trace = side.tmp / "strace"
    trace.mkdir(exist_ok=True)
    side.runtime.prefix = ["/usr/bin/strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-A", "-o",
                           str(trace / "t")]
    counts: dict[str, Any] = {}
    c = side.spaces.new("c")
    att = side.att(77777, c, 18888)
    try:
        for verb in ("ADD", "DEL"):
            (side.add if verb == "ADD" else side.delete)(att)
            progs: dict[str, int] = {}
            for line in (trace / "t").read_text().splitlines() if (trace / "t").exists() else []:
                m = re.search(r'execve\("([^"]+)".*= 0$', line)
                if m:
                    progs[Path(m.group(1)).name] = progs.get(Path(m.group(1)).name, 0) + 1
            (trace / "t").unlink(missing_ok=True)
            # cni-ignite: PyInstaller's bootloader exec'ing itself once (it is the plugin process, restarted)
            plugins = sum(v for p, v in progs.items() if (GO_DIR / p).exists() or p.startswith("ignite-"))
            restarts = progs.get("cni-ignite", 0)
            counts[verb] = {"plugin_processes": plugins, "bootloader_restarts": restarts,
                            "child_processes": sum(progs.values()) - plugins - restarts, "by_program": progs}
    finally:
        side.runtime.prefix = []
        side.spaces.delete(c)
    return counts

