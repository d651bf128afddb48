"""Warm start (cni_ignite/worker.py, packaging/launcher.c) against the exec'd plugin and the Go chain: the whole
Ignite network (as benchmarks/chain_bench.py builds it for each side), in ONE run, interleaved pair by pair.

    sudo .venv/bin/python benchmarks/worker_bench.py [--n 40] [--ours DIR] [--json PATH] [--quick]

Three sides, each in its own throwaway "host" netns with temp dataDir/stateDir:

- ``direct``: ours as today: the runtime execs dist/ignite-bridge (the frozen bundle) per call;
- ``warm``:   ours through the launcher: a temp bin dir whose ignite-bridge/ignite-ipam are symlinks to
  dist/cni-ignite/cni-ignite-launch, CNI_IGNITE_WORKER_SOCKET=<temp>/w/worker.sock in every call's env, and a
  ``cni-ignite worker --socket <that>`` started with ``ip netns exec <warm host>`` (so it lives in that netns),
  stopped by its PID with SIGTERM at the end, pass or fail;
- ``go``:     Debian's Go chain (bridge + host-local -> portmap -> firewall, conformance/ignite-reference.conflist).

Sequential: N x (ADD, DEL) of one fresh container per side, the sides in rotating order. Wall = the whole chain as
the runtime waits for it. CPU (user+sys): for direct and Go the plugin processes' wait4 rusage (children they
waited for included). For warm the launcher's rusage does NOT hold the call: the worker's forked child runs it, and
the worker reaps it with waitpid, so its time (and that of the programs it waited for) lands in the worker's
cutime+cstime. warm CPU = launcher rusage + delta of /proc/<worker>/stat cutime+cstime around the call; those are
in clock ticks (1/SC_CLK_TCK s, 10 ms here), so one call's figure is quantized: the mean over all calls (the
cumulative counter's delta / N) is exact to 10 ms / N and is the figure to read. The worker's own CPU (accept,
fork, reap: utime+stime delta) is reported apart and in ``warm+worker``.

Concurrent: K containers ADDed at once then DELed at once per side (chain_bench.concurrent: wall, failures,
duplicate addresses, leaks), a fresh worker per warm run so that its "stopped after N calls" count says how many
of the calls it served (the rest the launcher ran itself: a full listen backlog makes it fall back).

Memory (untimed): peak RSS of direct and Go calls under GNU time (as chain_bench); for warm the worker's VmHWM,
and of a forked child the VmHWM and Private_Dirty read from /proc while it runs (sampled every ~0.5 ms by a
thread: a lower bound of the child's peak).

Exits 0 whatever the figures (a measurement); non-zero if it cannot run or, with --quick, if any call failed,
anything leaked or the worker did not serve every warm call (the quick mode is what the test runs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import chain_bench  # noqa: E402
from benchlib import stats  # noqa: E402

from conformance.driver import ChainError  # noqa: E402

REPO = HERE.parent
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
SIDES = ("direct", "warm", "go")
# sequential only: the launcher with no worker listening (a host where the worker is down): it execs the bundle
NO_WORKER = "no-worker"
TAG = f"cnwb{os.getpid()}"  # this run's namespaces: <TAG>-h-…, <TAG>-c-…


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# ------------------------------------------------------------------------------------------- the worker

class Worker:
    """`cni-ignite worker` in a throwaway host netns on a temp socket; stop() by PID (SIGTERM), always."""

    def __init__(self, bundle: Path, host: str, sock: Path, log_path: Path) -> None:
        self.sock, self.log_path = sock, log_path
        with log_path.open("wb") as out:
            # `ip netns exec` execs the worker in place: the PID is the worker's.
            self.proc = subprocess.Popen(["ip", "netns", "exec", host, str(bundle / "cni-ignite"), "worker",
                                          "--socket", str(sock)], stdout=out, stderr=out)
        self.pid = self.proc.pid
        self.rc: int | None = None
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker did not start: {self.log_text()}")
            time.sleep(0.02)
        listener = self._listener_pid()
        if listener != self.pid:
            self.stop()
            raise RuntimeError(f"the socket's listener is PID {listener}, not the started worker {self.pid}")

    def _listener_pid(self) -> int:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.sock))
            pid: int = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            return pid
        finally:
            probe.close()  # an empty request: the worker drops it

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_ticks(self) -> tuple[int, int]:
        """(own utime+stime, reaped children's cutime+cstime), in clock ticks."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on
        return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])

    def status_kb(self, key: str, pid: int | None = None) -> int:
        for line in Path(f"/proc/{pid or self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return -1

    def children(self) -> list[int]:
        try:
            return [int(k) for k in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> int:
        if self.rc is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.rc = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # the process we started, by PID
                self.rc = self.proc.wait()
        return self.rc

    def served(self) -> int:
        for line in reversed(self.log_text().splitlines()):
            if "stopped after" in line:
                return int(line.split("stopped after ")[1].split()[0])
        return -1

    def summary(self) -> dict[str, Any]:
        return {"pid": self.pid, "rc": self.rc, "served": self.served(), "socket_left": self.sock.exists(),
                "log_tail": self.log_text().splitlines()[-5:]}


def bin_dir(root: Path, bundle: Path) -> Path:
    d = root / "warm-bin"
    d.mkdir()
    for name in ("ignite-bridge", "ignite-ipam"):
        (d / name).symlink_to(bundle.resolve() / "cni-ignite-launch")  # absolute: a relative one would dangle
    return d


def make_sides(ours: Path, root: Path, sock: Path, warm_bin: Path) -> dict[str, chain_bench.Side]:
    sides: dict[str, chain_bench.Side] = {}
    try:
        sides["direct"] = chain_bench.make_side("whole", "ours", ours, root, tag=TAG)
        sides["warm"] = chain_bench.make_side("whole", "ours", warm_bin, root,
                                              extra_env={"CNI_IGNITE_WORKER_SOCKET": str(sock)}, tag=TAG)
        sides[NO_WORKER] = chain_bench.make_side("whole", "ours", warm_bin, root, tag=TAG, extra_env={
            "CNI_IGNITE_WORKER_SOCKET": str(root / "no-worker" / "worker.sock")})  # never created
        sides["go"] = chain_bench.make_side("whole", "go", ours, root, tag=TAG)
    except BaseException:
        for s in sides.values():
            s.close()
        raise
    for name, s in sides.items():
        s.name = name  # the conflist is built (ours' for both ours); the name only tags container ids
    return sides


# ------------------------------------------------------------------------------------------- sequential

def _plugin_calls(calls: list[Any]) -> int:
    return sum(1 for c in calls if isinstance(c, chain_bench.TimedCall))


def one(s: chain_bench.Side, k: int, rec: dict[str, Any], w: Worker | None) -> None:
    """ADD then DEL of one fresh container (with a port mapping); wall and CPU per verb into rec."""
    c = s.spaces.new("c")
    att = s.att(k, c, 8080)
    try:
        for verb in ("ADD", "DEL"):
            before = w.cpu_ticks() if w else (0, 0)
            if verb == "ADD":
                ms, _, calls = s.add(att)
            else:
                ms, calls = s.delete(att)
            after = w.cpu_ticks() if w else (0, 0)
            rec["wall"][verb].append(ms)
            rec["cpu"][verb].append(chain_bench._cpu(calls) + (after[1] - before[1]) * TICK_MS)
            rec["launcher_cpu"][verb].append(chain_bench._cpu(calls))
            rec["worker_self_cpu"][verb].append((after[0] - before[0]) * TICK_MS)
            rec["plugin_calls"] += _plugin_calls(calls)
    except ChainError as exc:
        rec["failures"] += 1
        rec["errors"].append(str(exc)[:300])
        with suppress(ChainError):
            s.delete(att)
    finally:
        s.spaces.delete(c)


def _mean(xs: list[float]) -> float:
    return round(statistics.fmean(xs), 2) if xs else float("nan")


def sequential(sides: dict[str, chain_bench.Side], n: int, w: Worker) -> dict[str, Any]:
    recs = {name: {"wall": {"ADD": [], "DEL": []}, "cpu": {"ADD": [], "DEL": []},
                   "launcher_cpu": {"ADD": [], "DEL": []}, "worker_self_cpu": {"ADD": [], "DEL": []},
                   "failures": 0, "errors": [], "plugin_calls": 0} for name in sides}
    for s in sides.values():
        chain_bench.warm_up(s)
    order = list(sides)
    for k in range(n):
        rot = order[k % len(order):] + order[:k % len(order)]  # each side first, middle and last equally often
        for name in rot:
            one(sides[name], k, recs[name], w if name == "warm" else None)
    out: dict[str, Any] = {}
    for name, rec in recs.items():
        o: dict[str, Any] = {"failures": rec["failures"], "errors": rec["errors"][:3],
                             "plugin_calls": rec["plugin_calls"], "leaks": chain_bench.leaks(sides[name]),
                             "warm_error": sides[name].warm_error}
        for verb in ("ADD", "DEL"):
            o[verb] = {"wall": stats(rec["wall"][verb]),
                       "cpu": {**stats(rec["cpu"][verb]), "mean_ms": _mean(rec["cpu"][verb])}}
            if name == "warm":
                o[verb]["launcher_cpu"] = {**stats(rec["launcher_cpu"][verb]),
                                           "mean_ms": _mean(rec["launcher_cpu"][verb])}
                o[verb]["worker_self_cpu_mean_ms"] = _mean(rec["worker_self_cpu"][verb])
                both = [a + b for a, b in zip(rec["cpu"][verb], rec["worker_self_cpu"][verb], strict=True)]
                o[verb]["cpu_incl_worker_mean_ms"] = _mean(both)
        out[name] = o
    return out


# ------------------------------------------------------------------------------------------- memory

def memory(sides: dict[str, chain_bench.Side], runs: int, w: Worker) -> dict[str, Any]:
    """Untimed: peak RSS of direct/Go calls (GNU time); of the worker (VmHWM) and of its children (sampled)."""
    out: dict[str, Any] = {}
    for name in ("direct", "go"):
        s = sides[name]
        peaks: list[float] = []
        s.runtime.rss = True
        try:
            for k in range(runs):
                c = s.spaces.new("c")
                att = s.att(7000 + k, c, 8080)
                try:
                    _, _, calls = s.add(att)
                    peaks.append(chain_bench._rss(calls) / 1024)
                    calls = s.delete(att)[1]
                    peaks.append(chain_bench._rss(calls) / 1024)
                finally:
                    s.spaces.delete(c)
        finally:
            s.runtime.rss = False
        out[name] = {"call_maxrss_mb": round(max(peaks), 1) if peaks else None}
    s = sides["warm"]
    seen: dict[int, tuple[int, int]] = {}  # child pid -> (VmHWM kB, Private_Dirty kB), last read
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid in w.children():
                with suppress(OSError, ValueError):
                    hwm = w.status_kb("VmHWM", pid)
                    dirty = sum(int(ln.split()[1]) for ln in Path(f"/proc/{pid}/smaps_rollup").read_text()
                                .splitlines() if ln.startswith("Private_Dirty:"))
                    if hwm > 0:
                        seen[pid] = (hwm, dirty)
            time.sleep(0.0005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        for k in range(runs):
            c = s.spaces.new("c")
            att = s.att(7000 + k, c, 8080)
            try:
                s.add(att)
                s.delete(att)
            finally:
                s.spaces.delete(c)
    finally:
        stop.set()
        t.join()
    out["warm"] = {"worker_vmhwm_mb": round(w.status_kb("VmHWM") / 1024, 1),
                   "worker_vmrss_mb": round(w.status_kb("VmRSS") / 1024, 1),
                   "child_vmhwm_mb_sampled": round(max((v[0] for v in seen.values()), default=0) / 1024, 1),
                   "child_private_dirty_mb_sampled": round(max((v[1] for v in seen.values()), default=0) / 1024, 1),
                   "children_sampled": len(seen)}
    return out


# ------------------------------------------------------------------------------------------- concurrent

def concurrent(ours: Path, bundle: Path, root: Path, ks: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, k in enumerate(ks):
        out[str(k)] = {}
        order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
        for name in order:
            log(f"concurrent {k}: {name}")
            sub = Path(tempfile.mkdtemp(prefix=f"conc-{name}-{k}-", dir=root))
            sock = sub / "w" / "worker.sock"
            warm_bin = bin_dir(sub, bundle) if name == "warm" else ours
            s = chain_bench.make_side("whole", "go" if name == "go" else "ours", warm_bin, sub,
                                      extra_env={"CNI_IGNITE_WORKER_SOCKET": str(sock)} if name == "warm" else None,
                                      tag=TAG)
            s.name = name
            w: Worker | None = None
            try:
                if name == "warm":
                    w = Worker(bundle, s.spaces.host, sock, sub / "worker.log")
                res = chain_bench.concurrent("whole", s, k)
                if w is not None:
                    res["worker_vmhwm_mb"] = round(w.status_kb("VmHWM") / 1024, 1)
                    w.stop()
                    # k ADDs + k DELs, plus the warm-up's ADD and DEL (one ignite-bridge call each)
                    res["worker"] = {**w.summary(), "calls": 2 * k + 2}
            finally:
                if w is not None:
                    w.stop()
                s.close()
            out[str(k)][name] = res
    return out


# ------------------------------------------------------------------------------------------- report

def _m(d: dict[str, Any], *keys: str) -> float:
    for key in keys:
        d = d[key]
    return float(d)  # type: ignore[arg-type]


def _r(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(res: dict[str, Any]) -> str:
    seq = res["sequential"]
    lines = [f"# Warm start vs exec'd vs Go: whole Ignite network (n={res['n']} per side, interleaved)", "",
             f"load before: {res['load_before']}",
             f"load after the sequential and memory runs: {res.get('load_after_sequential', '-')}",
             f"load after the concurrent runs (they raise it themselves): {res['load_after']}", "",
             "| side | ADD wall median | ADD p90 | DEL wall median | DEL p90 | ADD CPU mean (median) "
             "| DEL CPU mean (median) |", "|---|---|---|---|---|---|---|"]
    for name in seq:
        o = seq[name]
        lines.append(f"| {name} | {o['ADD']['wall']['median_ms']} | {o['ADD']['wall']['p90_ms']} | "
                     f"{o['DEL']['wall']['median_ms']} | {o['DEL']['wall']['p90_ms']} | "
                     f"{o['ADD']['cpu']['mean_ms']} ({o['ADD']['cpu']['median_ms']}) | "
                     f"{o['DEL']['cpu']['mean_ms']} ({o['DEL']['cpu']['median_ms']}) |")
    w = seq["warm"]
    lines += ["", f"warm CPU = launcher rusage + worker cutime+cstime delta (ticks of {TICK_MS:g} ms: read the mean); "
              f"launcher alone: ADD {w['ADD']['launcher_cpu']['mean_ms']} ms, DEL {w['DEL']['launcher_cpu']['mean_ms']}"
              f" ms; worker's own CPU per call (accept/fork/reap): ADD {w['ADD']['worker_self_cpu_mean_ms']} ms, "
              f"DEL {w['DEL']['worker_self_cpu_mean_ms']} ms; warm incl. worker's own: ADD "
              f"{w['ADD']['cpu_incl_worker_mean_ms']} ms, DEL {w['DEL']['cpu_incl_worker_mean_ms']} ms.", "",
              "| ratio | ADD wall | DEL wall | ADD CPU (means) | DEL CPU (means) |", "|---|---|---|---|---|"]
    pairs = [("warm", "go"), ("direct", "go"), ("warm", "direct")]
    pairs += [(NO_WORKER, "direct")] if NO_WORKER in seq else []
    for a, b in pairs:
        cells = [_r(_m(seq[a], v, "wall", "median_ms"), _m(seq[b], v, "wall", "median_ms")) for v in ("ADD", "DEL")]
        cells += [_r(_m(seq[a], v, "cpu", "mean_ms"), _m(seq[b], v, "cpu", "mean_ms")) for v in ("ADD", "DEL")]
        lines.append(f"| {a}/{b} | " + " | ".join(cells) + " |")
    lines += ["", "failures: " + ", ".join(f"{n} {seq[n]['failures']}" for n in seq) + "; leaks: "
              + ", ".join(f"{n} {sum(len(v) for v in seq[n]['leaks'].values())}" for n in seq)
              + f"; worker served {res['worker']['served']} of {res['worker']['calls']} warm calls, exit "
              f"{res['worker']['rc']}, socket left: {res['worker']['socket_left']}"]
    mem = res.get("memory")
    if mem:
        lines += ["", f"memory: direct call peak RSS {mem['direct']['call_maxrss_mb']} MB, Go (largest plugin) "
                  f"{mem['go']['call_maxrss_mb']} MB; worker VmHWM {mem['warm']['worker_vmhwm_mb']} MB (VmRSS "
                  f"{mem['warm']['worker_vmrss_mb']} MB); a forked child, sampled: VmHWM "
                  f"{mem['warm']['child_vmhwm_mb_sampled']} MB of which private (dirtied after fork) "
                  f"{mem['warm']['child_private_dirty_mb_sampled']} MB ({mem['warm']['children_sampled']} children "
                  "seen)"]
    if res.get("concurrent"):
        lines += ["", "| concurrent | side | ADD total s | DEL total s | failures (ADD/DEL) | duplicates | leaks "
                  "| worker served |", "|---|---|---|---|---|---|---|---|"]
        for k, by in res["concurrent"].items():
            for name in SIDES:
                c = by[name]
                served = f"{c['worker']['served']} of {c['worker']['calls']}" if "worker" in c else "-"
                lines.append(f"| {k} | {name} | {c['ADD_total_s']} | {c['DEL_total_s']} | {c['ADD_failures']}/"
                             f"{c['DEL_failures']} | {c['duplicates']} | {sum(len(v) for v in c['leaks'].values())}"
                             f" | {served} |")
    return "\n".join(lines)


def problems(res: dict[str, Any]) -> list[str]:
    """What --quick fails on: a failed call, a leak, a warm call the worker did not serve, a worker that did
    not stop cleanly."""
    out: list[str] = []
    for name, o in res["sequential"].items():
        if o["failures"] or o["warm_error"]:
            out.append(f"sequential {name}: {o['failures']} failures {o['errors']} {o['warm_error']}")
        if o["leaks"]:
            out.append(f"sequential {name} leaked {o['leaks']}")
    workers = [res["worker"]] + [c["worker"] for by in res.get("concurrent", {}).values() for c in by.values()
                                 if "worker" in c]
    for wk in workers:
        if wk["served"] != wk["calls"] or wk["rc"] != 0 or wk["socket_left"]:
            out.append(f"worker {wk}")
    for k, by in res.get("concurrent", {}).items():
        for name, c in by.items():
            if c["ADD_failures"] or c["DEL_failures"] or c["duplicates"] or c["leaks"]:
                out.append(f"concurrent {k} {name}: {c}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="ADD+DEL pairs per side (default 40)")
    ap.add_argument("--ours", type=Path, default=REPO / "dist", help="folder with ignite-bridge and cni-ignite/ "
                    "(default dist)")
    ap.add_argument("--json", type=Path, help="write the results there too")
    ap.add_argument("--concurrency", default="32,64", help="K for the concurrent runs (default 32,64; '' none)")
    ap.add_argument("--memory-runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="n=3, concurrency 4, 1 memory run; exit 1 on any failed "
                    "call, leak or warm call not served by the worker")
    a = ap.parse_args()
    if a.quick:
        a.n, a.concurrency, a.memory_runs = 3, "4", 1
    if os.geteuid() != 0:
        print("worker_bench: must run as root (network namespaces)", file=sys.stderr)
        return 2
    ours = a.ours.resolve()
    bundle = ours / "cni-ignite"
    for need in (ours / "ignite-bridge", bundle / "cni-ignite", bundle / "cni-ignite-launch",
                 chain_bench.GO_DIR / "bridge"):
        if not need.exists():
            print(f"worker_bench: missing {need}", file=sys.stderr)
            return 2
    ks = [int(x) for x in a.concurrency.split(",") if x.strip()]
    res: dict[str, Any] = {"n": a.n, "load_before": load(), "clk_tck_ms": TICK_MS, "ours": str(ours),
                           "cpus": os.cpu_count(), "netns_tag": TAG}
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        root = Path(tmp)
        sock = root / "w" / "worker.sock"
        sides = make_sides(ours, root, sock, bin_dir(root, bundle))
        w: Worker | None = None
        try:
            w = Worker(bundle, sides["warm"].spaces.host, sock, root / "worker.log")
            log(f"worker PID {w.pid} in {sides['warm'].spaces.host}; sequential n={a.n}")
            res["sequential"] = sequential(sides, a.n, w)
            log("memory")
            res["memory"] = memory(sides, a.memory_runs, w)
            res["load_after_sequential"] = load()
            warm_calls = sides["warm"].runtime.log
            w.stop()
            res["worker"] = {**w.summary(), "calls": len(warm_calls)}
        finally:
            if w is not None:
                w.stop()
            for s in sides.values():
                s.close()
        res["concurrent"] = concurrent(ours, bundle, root, ks)
    res["load_after"] = load()
    text = report(res)
    print(text)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    bad = problems(res)
    for p in bad:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if (a.quick and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
