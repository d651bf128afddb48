"""The mixed soak: 8 workers run random ADD / CHECK / DEL / GC of random containers (half of them with a
mapped host port) through ignite-bridge with the in-process IPAM, SIGKILL the plugin now and then, let the
reference host-local allocate from the same dataDir in between, and delete a container's namespace before
its DEL now and then. All in one throwaway host namespace with temp dataDir/stateDir (harness.Scenario).

Checked continuously: no address is held by two live attachments (the runtime's view, host-local's leases
and the lease files agree), every live attachment's lease names it and its rules and state are present
(CHECK). At the end, after the final DELs and a GC: nothing left (the scenario's baseline). Measured: peak
RSS and CPU time of every plugin process (wait4's rusage) and its wall time; the last 10% of calls are
compared with the first 10%.

``python tests/soak/soak.py --profile long`` (``make soak``); the quick profile runs in the suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "faults"))
sys.path.insert(0, str(HERE.parent))

from harness import MEANINGFUL, Scenario, plugin_dir  # noqa: E402

HOST_LOCAL = Path("/usr/lib/cni/host-local")
# The plugin's own peak RSS: wait4's ru_maxrss of a child this (large, growing) process spawns starts at this
# process's own high-water mark (fork/vfork share or copy its memory until exec), so calls not killed run
# under GNU time, which forks the plugin from its own small image and reports the plugin's %M.
TIME = Path("/usr/bin/time")
PROFILES = {"quick": {"ops": 150, "slots": 24}, "long": {"ops": 4000, "slots": 40}}


@dataclass
class Call:
    verb: str
    rc: int
    out: dict[str, Any] | None
    stderr: str
    wall: float
    cpu: float
    rss_kb: int
    killed: bool = False


class Gate:
    """Calls share it, GC takes it alone: a runtime never collects an attachment it is still adding."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.shared = 0
        self.alone = False

    def __enter__(self) -> None:
        with self.cond:
            self.cond.wait_for(lambda: not self.alone)
            self.shared += 1

    def __exit__(self, *exc: object) -> None:
        with self.cond:
            self.shared -= 1
            self.cond.notify_all()

    def exclusive(self) -> Gate.Excl:
        return Gate.Excl(self)

    class Excl:
        def __init__(self, gate: Gate) -> None:
            self.gate = gate

        def __enter__(self) -> None:
            with self.gate.cond:
                self.gate.cond.wait_for(lambda: not self.gate.alone)
                self.gate.alone = True
                self.gate.cond.wait_for(lambda: self.gate.shared == 0)

        def __exit__(self, *exc: object) -> None:
            with self.gate.cond:
                self.gate.alone = False
                self.gate.cond.notify_all()


@dataclass
class Slot:
    """One container of the soak; its lock serialises calls for it, as a runtime does."""
    n: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    cid: str = ""
    ns: str = ""
    prev: dict[str, Any] | None = None
    state: str = "absent"  # absent | live | dirty (an ADD that was killed or failed: needs its DEL)
    port: int = 0
    generation: int = 0


class Soak:
    def __init__(self, profile: str, seed: int, workers: int = 8, kill_rate: float = 0.06,
                 hostlocal_rate: float = 0.08, gone_rate: float = 0.05, gc_rate: float = 0.03,
                 launcher: Path | None = None) -> None:
        self.p = PROFILES[profile]
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()
        self.workers = workers
        self.rates = {"kill": kill_rate, "hostlocal": hostlocal_rate, "gone": gone_rate, "gc": gc_rate}
        self.sc = Scenario("bridge")
        self.sc.conf["ipam"]["subnet"] = "10.61.0.0/22"
        self.slots = [Slot(i) for i in range(self.p["slots"])]
        self.calls: list[Call] = []
        self.calls_lock = threading.Lock()
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.hl_lock = threading.Lock()
        self.hl_live: dict[str, str] = {}  # host-local container ID -> address
        self.hl_seq = 0
        self.done = 0
        self.done_lock = threading.Lock()
        self.gate = Gate()
        self.checks: dict[str, int] = {}  # invariant checks made, by kind
        self.control: list[Call] = []  # VERSION calls through the run: how the host's load moves CPU per call
        self.bin = plugin_dir()
        self.extra_env: dict[str, str] = {}
        self.warm: subprocess.Popen[bytes] | None = None  # the cni-ignite worker (not the soak's worker threads)
        if launcher is not None:
            self.start_worker(launcher)

    def start_worker(self, launcher: Path) -> None:
        """Warm start (docs/WORKER.md): the plugins are the bundle's launcher, served by a `cni-ignite worker` in
        the host namespace; a killed call is then a killed launcher, whose child the worker kills."""
        self.bin = Path(self.sc.root) / "warm-bin"
        self.bin.mkdir()
        for name in ("ignite-bridge", "ignite-ipam"):
            (self.bin / name).symlink_to(launcher)
        sock = Path(self.sc.root) / "worker" / "worker.sock"
        self.extra_env = {"CNI_IGNITE_WORKER_SOCKET": str(sock)}
        self.worker_log = Path(self.sc.root) / "worker.log"
        with self.worker_log.open("wb") as out:
            self.warm = subprocess.Popen(["ip", "netns", "exec", self.sc.host, str(launcher.parent / "cni-ignite"),
                                            "worker", "--socket", str(sock)], stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.warm.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start: {self.worker_log.read_text()}")
            time.sleep(0.05)

    def stop_worker(self) -> int:
        """Stop the worker (SIGTERM, by its PID) and return how many calls it served (-1 without one)."""
        if self.warm is None:
            return -1
        if self.warm.poll() is None:
            self.warm.terminate()
        try:
            self.warm.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.warm.kill()
            self.warm.wait()
        self.warm = None
        counts = [int(line.split("stopped after ")[1].split()[0]) for line in self.worker_log.read_text().splitlines()
                  if "stopped after" in line]
        return counts[-1] if counts else 0

    # --------------------------------------------------------------------------------------------- calls
    def conf(self, slot: Slot, prev: dict[str, Any] | None, *, gc_valid: list[str] | None = None) -> bytes:
        conf = json.loads(json.dumps(self.sc.conf))
        conf["runtimeConfig"] = {"portMappings": [{"hostPort": slot.port, "containerPort": 80, "protocol": "tcp"}]
                                 if slot.port else []}
        if prev is not None:
            conf["prevResult"] = prev
        if gc_valid is not None:
            conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": "eth0"} for c in gc_valid]
        return json.dumps(conf).encode()

    def run(self, verb: str, stdin: bytes, cid: str = "", ns: str = "", *, kill_after: float | None = None,
            exe: str = "", extra: dict[str, str] | None = None) -> Call:
        env = self.sc.env(verb, cid or "none", ns or "none")
        if not ns:
            env["CNI_NETNS"] = ""
        env.update(self.extra_env)
        env.update(extra or {})
        argv = ["ip", "netns", "exec", self.sc.host, exe or str(self.bin / "ignite-bridge")]
        rss_file = ""
        if not exe and kill_after is None and TIME.exists():  # a killed call must kill the plugin itself
            rss_file = f"{self.sc.root}/rss-{threading.get_ident()}-{time.monotonic_ns()}"
            argv[4:4] = [str(TIME), "-f", "%M", "-o", rss_file]
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
        killer = None
        if kill_after is not None:
            killer = threading.Timer(kill_after, _kill, (proc.pid,))
            killer.start()
        out_b, err_b = _talk(proc, stdin)
        if killer is not None:  # stopped before the child is reaped: the PID cannot be another's yet
            killer.cancel()
            killer.join()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        try:
            out = json.loads(out_b) if out_b.strip() else None
        except ValueError:
            out = None
        rss = ru.ru_maxrss
        if rss_file:
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss = int(Path(rss_file).read_text().split()[-1])
            with contextlib.suppress(OSError):
                os.unlink(rss_file)
        call = Call(verb, proc.returncode, out if isinstance(out, dict) else None, err_b.decode(errors="replace"),
                    wall, ru.ru_utime + ru.ru_stime, rss, killed=proc.returncode == -signal.SIGKILL)
        if verb == "VERSION":
            with self.calls_lock:
                self.control.append(call)
        elif not exe and not call.killed:
            with self.calls_lock:
                self.calls.append(call)
        return call

    def bad(self, what: str, call: Call) -> None:
        self.errors.append(f"{what}: rc {call.rc} {json.dumps(call.out)[:300]} {call.stderr[-300:]}")

    def answered_well(self, call: Call) -> bool:
        if call.killed:
            return True
        if "Traceback" in call.stderr:
            return False
        if call.rc == 0:
            return True
        return call.out is not None and call.out.get("code") in MEANINGFUL

    # --------------------------------------------------------------------------------------- operations
    def pick(self, n: int) -> int:
        with self.rng_lock:
            return self.rng.randrange(n)

    def kill_delay(self, verb: str) -> float:
        """A random point inside a typical `verb` call: 0 to 0.9 of the median wall time of its last 20 unkilled
        calls (0.05 s before any). A fixed range outlived the calls once they got faster: a quick soak with
        kills drawn but none landing (CI, seed 13, after DEL went from ~85 to ~65 ms)."""
        with self.calls_lock:
            walls = sorted([c.wall for c in self.calls[-200:] if c.verb == verb][-20:])
        typical = walls[len(walls) // 2] if walls else 0.05
        return self.pick(1000) / 1000 * 0.9 * typical

    def chance(self, p: float) -> bool:
        with self.rng_lock:
            return self.rng.random() < p

    def op(self) -> None:
        if self.chance(self.rates["gc"]):
            return self.gc()
        if self.chance(self.rates["hostlocal"]):
            return self.hostlocal()
        slot = self.slots[self.pick(len(self.slots))]
        with slot.lock, self.gate:
            if slot.state == "absent":
                self.add(slot)
            elif slot.state == "dirty":
                self.delete(slot)
            elif self.chance(0.4):
                self.check(slot)
            else:
                self.delete(slot, gone=self.chance(self.rates["gone"]))

    def count(self, what: str) -> None:
        with self.done_lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def add(self, slot: Slot) -> None:
        slot.generation += 1
        slot.cid = f"soak-{slot.n}-{slot.generation}"
        slot.ns = self.sc.spaces.new("cnit-soak")
        slot.port = 20000 + slot.n if self.chance(0.5) else 0
        slot.state = "dirty"  # until the ADD is known to have succeeded
        kill = self.kill_delay("ADD") if self.chance(self.rates["kill"]) else None
        call = self.run("ADD", self.conf(slot, None), slot.cid, slot.ns, kill_after=kill)
        self.count("ADD killed" if call.killed else "ADD")
        if call.killed:
            return
        if call.rc == 0 and call.out is not None:
            slot.prev, slot.state = call.out, "live"
            self.check_live(slot)
        elif not self.answered_well(call):
            self.bad(f"ADD {slot.cid}", call)

    def check(self, slot: Slot) -> None:
        call = self.run("CHECK", self.conf(slot, slot.prev), slot.cid, slot.ns)
        self.count("CHECK")
        if call.rc != 0:
            self.bad(f"CHECK of live {slot.cid}", call)
        self.check_live(slot)

    def delete(self, slot: Slot, *, gone: bool = False) -> None:
        slot.state = "dirty"  # no longer live from here: its address may go to someone else
        if gone:
            self.drop_ns(slot)
        kill = self.kill_delay("DEL") if self.chance(self.rates["kill"] / 2) else None
        call = self.run("DEL", self.conf(slot, slot.prev), slot.cid, slot.ns if slot.ns else "", kill_after=kill)
        self.count("DEL killed" if call.killed else ("DEL (namespace gone)" if gone else "DEL"))
        if call.killed:
            slot.state = "dirty"
            return
        if call.rc != 0:
            self.bad(f"DEL {slot.cid}", call)
            slot.state = "dirty"
            return
        self.check_released(slot)
        self.drop_ns(slot)
        slot.state, slot.prev, slot.cid = "absent", None, ""

    def drop_ns(self, slot: Slot) -> None:
        if slot.ns and slot.ns in self.sc.spaces.made:
            self.sc.spaces.made.remove(slot.ns)
            subprocess.run(["ip", "netns", "del", slot.ns], capture_output=True, check=False)
        slot.ns = ""

    def gc(self) -> None:
        # Everything a runtime knows (live, dirty and in-flight containers) is valid: a GC never races an ADD.
        with self.gate.exclusive():
            valid = [s.cid for s in self.slots if s.cid]
            call = self.run("GC", self.conf(Slot(-1), None, gc_valid=valid))
        self.count("GC")
        if call.rc != 0:
            self.bad("GC", call)

    def hostlocal(self) -> None:
        """The reference host-local, on the same dataDir and network: ADD a new container or DEL an old one."""
        with self.hl_lock:
            self.hl_seq += 1
            cid = f"hl-{self.hl_seq}"
            old = next(iter(self.hl_live), None) if len(self.hl_live) >= 4 or self.chance(0.4) else None
        conf = {"cniVersion": "1.0.0", "name": self.sc.conf["name"],
                "ipam": {"type": "host-local", "subnet": "10.61.0.0/22", "dataDir": self.sc.conf["ipam"]["dataDir"]}}
        if old is not None:
            with self.hl_lock:
                self.hl_live.pop(old, None)  # not live from here
            call = self.run("DEL", json.dumps(conf).encode(), old, "/var/run/netns/none", exe=str(HOST_LOCAL))
            self.count("host-local DEL")
            if call.rc != 0:
                self.bad(f"host-local DEL {old}", call)
            with self.hl_lock:
                self.hl_live.pop(old, None)
            return
        call = self.run("ADD", json.dumps(conf).encode(), cid, "/var/run/netns/none", exe=str(HOST_LOCAL))
        self.count("host-local ADD")
        if call.rc != 0 or call.out is None:
            self.bad(f"host-local ADD {cid}", call)
            return
        with self.hl_lock:
            self.hl_live[cid] = call.out["ips"][0]["address"].split("/")[0]

    # --------------------------------------------------------------------------------------- invariants
    def addresses(self, slot: Slot) -> list[str]:
        return sorted({ip["address"].split("/")[0] for ip in (slot.prev or {}).get("ips", [])})

    def checked(self, what: str) -> None:
        with self.done_lock:
            self.checks[what] = self.checks.get(what, 0) + 1

    def check_live(self, slot: Slot) -> None:
        """The live attachment's leases name it; its firewall record exists."""
        self.checked("live attachment whole")
        for ip in self.addresses(slot):
            try:
                text = self.sc.path("data", "faultnet", ip).read_bytes().decode(errors="replace")
            except FileNotFoundError:
                self.errors.append(f"live {slot.cid}: no lease for {ip}")
                continue
            if text != f"{slot.cid}\r\neth0":
                self.errors.append(f"live {slot.cid}: lease {ip} holds {text!r}")
        if not any(rec.get("containerID") == slot.cid for rec in self.records()):
            self.errors.append(f"live {slot.cid}: no firewall state record")

    def records(self) -> list[dict[str, Any]]:
        out = []
        folder = self.sc.path("state", "faultnet")
        for p in folder.iterdir() if folder.exists() else ():
            if p.name == "tmp":  # the records' temp files (firewall/state.py TMP), no record
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (FileNotFoundError, ValueError):  # removed by a concurrent DEL, or a temp file
                continue
        return out

    def check_released(self, slot: Slot) -> None:
        self.checked("DEL released its leases")
        for ip in self.addresses(slot):
            try:
                text = self.sc.path("data", "faultnet", ip).read_bytes().decode(errors="replace")
            except FileNotFoundError:
                continue
            if text == f"{slot.cid}\r\neth0":
                self.errors.append(f"DEL {slot.cid} left its lease {ip}")

    def check_unique(self) -> None:
        """No address held by two live attachments (ours and host-local's)."""
        self.checked("no address held twice")
        held: dict[str, str] = {}
        for s in self.slots:
            if s.state == "live":
                for ip in self.addresses(s):
                    if ip in held:
                        self.errors.append(f"{ip} held by {held[ip]} and {s.cid}")
                    held[ip] = s.cid
        for cid, ip in list(self.hl_live.items()):
            if ip in held:
                self.errors.append(f"{ip} held by {held[ip]} and host-local {cid}")
            held[ip] = cid

    # ----------------------------------------------------------------------------------------------- run
    def worker(self) -> None:
        while True:
            with self.done_lock:
                if self.done >= self.p["ops"]:
                    return
                self.done += 1
            try:
                self.op()
            except Exception as exc:  # a harness failure is a soak failure, not a hang
                self.errors.append(f"worker: {type(exc).__name__}: {exc}")
            if self.pick(10) == 0:
                self.check_unique()
            if self.pick(20) == 0:
                self.run("VERSION", b"")

    def finish(self) -> list[str]:
        """Final DELs (each twice), host-local DELs and a GC: then nothing may be left."""
        for s in self.slots:
            if s.state != "absent":
                self.delete(s)
                if s.state != "absent":
                    self.delete(s)
        for cid in list(self.hl_live):
            conf = {"cniVersion": "1.0.0", "name": self.sc.conf["name"],
                    "ipam": {"type": "host-local", "subnet": "10.61.0.0/22",
                             "dataDir": self.sc.conf["ipam"]["dataDir"]}}
            call = self.run("DEL", json.dumps(conf).encode(), cid, "/var/run/netns/none", exe=str(HOST_LOCAL))
            if call.rc != 0:
                self.bad(f"host-local DEL {cid}", call)
            self.hl_live.pop(cid)
        gc = self.run("GC", self.conf(Slot(-1), None, gc_valid=[]))
        if gc.rc != 0:
            self.bad("final GC", gc)
        left = self.sc.leftovers()
        # The bridge's own records (stateDir/.bridge) may keep per-network lock files only.
        return left

    def trend(self) -> dict[str, tuple[float, float]]:
        """(first 10%, last 10%) medians of CPU seconds, wall seconds and peak RSS (kB), over every call."""
        calls = [c for c in self.calls if c.verb in ("ADD", "DEL", "CHECK")]
        k = max(1, len(calls) // 10)
        first, last = calls[:k], calls[-k:]
        out = {}
        for name, get in (("cpu", lambda c: c.cpu), ("wall", lambda c: c.wall), ("rss", lambda c: c.rss_kb)):
            out[name] = (statistics.median(map(get, first)), statistics.median(map(get, last)))
        # The high end of each tenth, not its single largest call: one call in ~150 now and then peaks at 18-37 MB
        # against ~13.7 MB (GNU time's %M is the largest of the plugin and the children it reaped, e.g. nft), which
        # is not growth over the run; growth lifts the whole tail.
        out["peak rss"] = (_p90([c.rss_kb for c in first]), _p90([c.rss_kb for c in last]))
        if len(self.control) >= 4:  # the same VERSION call early and late: the load's share of a CPU change
            k = max(2, len(self.control) // 10)
            out["control cpu"] = (statistics.median(c.cpu for c in self.control[:k]),
                                  statistics.median(c.cpu for c in self.control[-k:]))
        return out

    def main(self) -> dict[str, Any]:
        started, load = time.monotonic(), os.getloadavg()[0]
        self.sc.prepare()
        threads = [threading.Thread(target=self.worker) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.check_unique()
        left = self.finish()
        return {"seconds": time.monotonic() - started, "counts": dict(sorted(self.counts.items())),
                "checks": dict(sorted(self.checks.items())), "load": (load, os.getloadavg()[0]),
                "errors": self.errors, "leftovers": left, "trend": self.trend(), "calls": len(self.calls)}

    def close(self) -> None:
        self.stop_worker()
        self.sc.close()


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # our own child, by PID, not yet reaped


def _talk(proc: subprocess.Popen[bytes], data: bytes) -> tuple[bytes, bytes]:
    """communicate() without its wait (the caller reaps with wait4 for the child's rusage)."""
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read() if proc.stderr else b""))
    reader.start()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    out = proc.stdout.read()
    reader.join()
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    return out, err[0] if err else b""


def report(res: dict[str, Any]) -> str:
    lines = [f"soak: {res['calls']} plugin calls in {res['seconds']:.0f} s; operations {res['counts']}",
             f"  invariant checks {res.get('checks', {})}"]
    for name, (a, b) in res["trend"].items():
        lines.append(f"  {name}: first 10% {a:.4g}, last 10% {b:.4g} ({(b / a if a else 1):.2f}x)")
    lines += [f"  error: {e}" for e in res["errors"][:30]]
    lines += [f"  left: {x}" for x in res["leftovers"]]
    return "\n".join(lines)


def markdown(res: dict[str, Any], *, seed: int, profile: str, ops: int, command: str) -> str:
    """The run as a RESULTS.md section."""
    counts, checks = res["counts"], res.get("checks", {})
    rows = ["| what | count |", "|---|---:|", f"| operations (target) | {ops} |",
            f"| plugin calls measured (not killed) | {res['calls']} |",
            *(f"| op: {k} | {v} |" for k, v in counts.items()),
            *(f"| check: {k} | {v} |" for k, v in checks.items()),
            f"| invariant violations | {len(res['errors'])} |",
            f"| left after final DELs + GC | {len(res['leftovers'])} |"]
    trend = ["| per call (ADD, CHECK, DEL) | first 10% | last 10% | last / first |", "|---|---:|---:|---:|"]
    units = {"cpu": ("median CPU ms (user+sys)", 1000), "wall": ("median wall ms", 1000),
             "control cpu": ("control: median CPU ms of VERSION", 1000),
             "rss": ("median peak RSS kB", 1), "peak rss": ("90th percentile peak RSS kB", 1)}
    for name, (a, b) in res["trend"].items():
        label, scale = units.get(name, (name, 1))
        trend.append(f"| {label} | {a * scale:.1f} | {b * scale:.1f} | {(b / a if a else 1):.2f}x |")
    la, lb = res.get("load", (0.0, 0.0))
    out = [f"## Soak ({profile}, seed {seed}, {res['seconds']:.0f} s, 1-min load average {la:.1f} at the start, "
           f"{lb:.1f} at the end, 2 cores)", "", f"`{command}`", "", *rows, "", *trend, ""]
    if res["errors"] or res["leftovers"]:
        out += ["### Problems", "", *(f"- {e}" for e in res["errors"][:50]),
                *(f"- left: {x}" for x in res["leftovers"]), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=tuple(PROFILES), default="long")
    ap.add_argument("--ops", type=int, default=0)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out", default="", help="write the run as a markdown section to this file")
    ap.add_argument("--warm", action="store_true",
                    help="through the frozen bundle's launcher and a cni-ignite worker (docs/WORKER.md)")
    args = ap.parse_args(argv)
    launcher = Path(os.environ.get("CNI_IGNITE_DIST", str(HERE.parent.parent / "dist"))).absolute() / "cni-ignite" / \
        "cni-ignite-launch"
    soak = Soak(args.profile, args.seed, launcher=launcher if args.warm else None)
    if args.ops:
        soak.p = {**soak.p, "ops": args.ops}
    print(f"seed {args.seed}, profile {args.profile}, {soak.p}", flush=True)
    try:
        res = soak.main()
        served = soak.stop_worker()
    finally:
        soak.close()
    if served >= 0:
        print(f"calls served by the worker: {served}")
    print(report(res))
    if args.out:
        Path(args.out).write_text(markdown(res, seed=args.seed, profile=args.profile, ops=soak.p["ops"],
                                           command=" ".join(["tests/soak/soak.py", *(argv or sys.argv[1:])])))
    ok = not res["errors"] and not res["leftovers"]
    if args.profile == "long":
        trend = res["trend"]
        ca, cb = trend.get("control cpu", (1.0, 1.0))
        load = cb / ca if ca else 1.0  # the host got busier (or quieter) by this factor
        for name in ("cpu", "peak rss"):
            a, b = trend[name]
            grew = b / a / (load if name == "cpu" else 1.0)
            if grew > 1.10:
                print(f"FAIL: {name} of the last 10% is {grew:.2f}x the first 10% (> 1.10x"
                      f"{', CPU scaled by the control' if name == 'cpu' else ''})")
                ok = False
        # wall time on a shared host follows its load: reported, not judged
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
