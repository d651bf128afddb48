"""Fault injection at system calls (strace ``-e inject``) on ignite-bridge and ignite-ipam, in throwaway
namespaces and temp folders, and the invariants every faulted run must keep.

One ``Scenario`` is a host network namespace, a container namespace, a dataDir and a stateDir of its own,
and a config: ignite-bridge with the in-process IPAM, ipMasq, one port mapping and VM mode
(tc-redirect), or ignite-ipam alone. Its baseline is what a clean ADD + DEL leaves (the bridge, our nft
table and chains, the data folders and their ``lock`` files); after every faulted run followed by DEL
and a second DEL the scenario must be back at that baseline.

strace counts injections per syscall and per tracee, and here only the plugin's own process is traced
(no ``-f``): a fault hits the Nth call of that syscall in the plugin, never in nft or iptables it runs
(their failures reach the plugin as exit statuses, covered by the firewall's own tests). strace cannot
select netlink sockets in an injection, so sendto/sendmsg/recvfrom/recvmsg faults hit every socket; the
plugins use sockets only for netlink.

Faults at the first calls of a run land in the interpreter's start (site, encodings, the console
script, ``cni_ignite.cli`` and ``skel``) before the CNI skeleton can answer; a run's ``startup`` count
(calls made before the plugin reads its stdin) tells them apart, and the table shows them apart. They
must still change nothing.

Run as a script for the table: ``python tests/faults/harness.py --profile long --out tests/faults/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from nsutil import Namespaces  # noqa: E402

# The syscalls swept, and what each stands for in the plugins (x86_64 names, as CPython 3.11 calls them).
SYSCALLS: tuple[str, ...] = (
    "write",      # lease and record contents, the answer on stdout
    "rename",     # os.replace: last_reserved_ip, index entries, stamp, state records, port claims
    "link",       # os.link: a lease appears (atomic, exclusive)
    "fsync",      # a lease's temp file
    "openat",     # every file, lock and module
    "unlink",     # temp files, releases
    "utimensat",  # the index stamp
    "mkdir",      # data, index, state and port folders
    "flock",      # the IPAM store's and the port registry's locks
    "sendto",     # netlink requests
    "recvfrom",   # netlink replies
    "sendmsg",    # (not used by today's code: counted 0, kept to notice a change)
    "recvmsg",
)
# The long profile adds these: the rest of what a run does with files, processes and namespaces.
EXTRA: tuple[str, ...] = ("read", "socket", "bind", "setns", "pipe2", "clone3", "poll", "wait4", "getdents64",
                          "newfstatat", "close", "pidfd_open")
ERRNOS: tuple[str, ...] = ("ENOSPC", "EIO", "EACCES")
KINDS: tuple[str, ...] = (*ERRNOS, "KILL")

# Codes a faulted run may answer with: I/O failure, try again later, and the plugin-specific ones that a
# fault can make true (a container namespace that cannot be opened: 8). 999 is "internal".
MEANINGFUL = {3, 4, 5, 6, 7, 8, 11, 50, 51, 100}

PLUGIN_DIR = Path(os.environ.get("FAULTS_PLUGIN_DIR", str(Path(sys.executable).parent)))


def plugin_dir() -> Path:
    """The folder holding ignite-bridge / ignite-ipam: the venv's console scripts (source), or with
    FAULTS_PLUGIN_DIR=dist the frozen bundle's entry points."""
    return PLUGIN_DIR


def _sh(argv: list[str], *, input: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None,
        check: bool = False) -> subprocess.CompletedProcess[bytes]:
    res = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.decode()}")
    return res


@dataclass
class Run:
    """One plugin call."""
    rc: int
    stdout: str
    stderr: str
    injected: bool = False
    killed: bool = False
    seconds: float = 0.0

    @property
    def doc(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.stdout) if self.stdout.strip() else None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    @property
    def outcome(self) -> str:
        """ok | code-N | killed | answer-lost | traceback | no-answer | garbage.

        answer-lost: the fault hit the write of the answer itself (nothing can be said on a stdout that
        fails; the plugin notes it on stderr and exits 1, and the runtime treats the call as failed)."""
        if self.killed:
            return "killed"
        if "Traceback (most recent call last)" in self.stderr:
            return "traceback"
        doc = self.doc
        if self.rc == 0:
            return "ok" if self.stdout.strip() == "" or doc is not None else "garbage"
        if doc is None:
            if not self.stdout.strip() and "writing the answer to stdout failed" in self.stderr:
                return "answer-lost"
            return "no-answer" if not self.stdout.strip() else "garbage"
        return f"code-{doc.get('code')}"


@dataclass
class Scenario:
    """A host namespace, a container namespace, temp dataDir/stateDir and a config for one plugin."""
    plugin: str  # "bridge" or "ipam"
    spaces: Namespaces = field(default_factory=Namespaces)
    root: str = ""
    host: str = ""
    ctr: str = ""
    cid: str = "fault-ctr"
    ifname: str = "eth0"
    conf: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    prev: dict[str, Any] | None = None
    prefix: list[str] = field(default_factory=list)  # runs the plugin in another mount namespace (nsenter)
    view: str = ""  # where this process sees the scenario's files (/proc/<pid>/root of that namespace)

    def __post_init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="cnit-faults-")
        self.host = self.spaces.new("cnit-fhost")
        self.ctr = self.spaces.new("cnit-fctr")
        data, state = f"{self.root}/data", f"{self.root}/state"
        ipam = {"type": "ignite-ipam", "subnet": "10.61.0.0/24", "dataDir": data}
        if self.plugin == "bridge":
            self.conf = {"cniVersion": "1.1.0", "name": "faultnet", "type": "ignite-bridge", "bridge": "ignite0",
                         "isGateway": True, "isDefaultGateway": True, "ipMasq": True, "backend": "nftables",
                         "vm": {"mode": "tc-redirect"}, "stateDir": state, "ipam": ipam,
                         "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                             "protocol": "tcp"}]}}
        else:
            self.conf = {"cniVersion": "1.1.0", "name": "faultnet", "type": "ignite-ipam", "ipam": ipam}

    # ----------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.spaces.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_ctr(self) -> None:
        """A fresh container namespace when the last one was used up (a killed ADD may leave links in it;
        the runtime's DEL sees the same namespace, so it is replaced only after the DELs)."""
        if self.ctr not in self.spaces.made:
            self.ctr = self.spaces.new("cnit-fctr")

    def prepare(self) -> None:
        """A clean ADD, CHECK and DEL; what is left is the baseline."""
        add = self.call("ADD")
        assert add.rc == 0, f"clean ADD failed: {add.stdout} {add.stderr}"
        self.prev = add.doc
        chk = self.call("CHECK")
        assert chk.rc == 0, f"clean CHECK failed: {chk.stdout} {chk.stderr}"
        dl = self.call("DEL")
        assert dl.rc == 0, f"clean DEL failed: {dl.stdout} {dl.stderr}"
        self.prev = None
        self.baseline = self.snapshot()

    # ------------------------------------------------------------------------------------------- calls
    def env(self, verb: str, cid: str = "", ctr: str = "") -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": verb,
                "CNI_CONTAINERID": cid or self.cid, "CNI_NETNS": f"/var/run/netns/{ctr or self.ctr}",
                "CNI_IFNAME": self.ifname,
                "CNI_PATH": str(plugin_dir()), "CNI_ARGS": "", "PYTHONDONTWRITEBYTECODE": "1",
                **({"PYTHONPATH": os.environ["FAULTS_PYTHONPATH"]} if os.environ.get("FAULTS_PYTHONPATH") else {})}

    def stdin(self, verb: str, valid: list[str] | None = None, prev: dict[str, Any] | None = None) -> bytes:
        conf = dict(self.conf)
        prev = prev if prev is not None else self.prev
        if verb == "GC":
            conf["cni.dev/valid-attachments"] = [{"containerID": c, "ifname": self.ifname} for c in valid or []]
        elif verb in ("CHECK", "DEL") and prev is not None:
            conf["prevResult"] = prev
        return json.dumps(conf).encode()

    def path(self, *parts: str) -> Path:
        """A path of the scenario's files as this process sees it."""
        return Path(self.view + self.root, *parts)

    def call(self, verb: str, *, syscall: str = "", index: int = 0, fault: str = "",
             trace: str = "", timeout: float = 60, cid: str = "", ctr: str = "", valid: list[str] | None = None,
             prev: dict[str, Any] | None = None) -> Run:
        """Run the plugin for `verb` in the host namespace, with a fault at the `index`th `syscall` when given
        (fault: an errno name or KILL), or with a syscall trace written to `trace`."""
        exe = str(plugin_dir() / f"ignite-{self.plugin}")
        argv = [exe]
        log = ""
        if syscall:
            log = trace or f"{self.root}/strace-{uuid.uuid4().hex[:8]}.log"
            action = "signal=KILL" if fault == "KILL" else f"error={fault}"
            argv = ["strace", "-qq", "-o", log, "-e", f"trace={syscall}",
                    "-e", f"inject={syscall}:{action}:when={index}", exe]
        elif trace:
            argv = ["strace", "-qq", "-o", trace, exe]
        started = time.monotonic()
        res = _sh([*self.prefix, "ip", "netns", "exec", self.host, *argv], input=self.stdin(verb, valid, prev),
                  env=self.env(verb, cid, ctr), timeout=timeout)
        run = Run(res.returncode, res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace"),
                  seconds=time.monotonic() - started)
        if syscall:
            seen = Path(self.view + log)
            try:
                text = seen.read_text(errors="replace")
            finally:
                if not trace:
                    seen.unlink(missing_ok=True)
            run.killed = fault == "KILL" and "+++ killed by SIGKILL" in text
            run.injected = "(INJECTED)" in text or run.killed
        return run

    # ----------------------------------------------------------------------------------- syscall counts
    def counts(self, verb: str, syscalls: tuple[str, ...] = SYSCALLS) -> tuple[dict[str, int], dict[str, int]]:
        """(calls per syscall in a clean run of `verb`, calls made before the plugin read its stdin)."""
        log = f"{self.root}/count.log"
        self.call(verb, trace=log)
        total: dict[str, int] = dict.fromkeys(syscalls, 0)
        startup: dict[str, int] = dict.fromkeys(syscalls, 0)
        started = False
        for line in Path(self.view + log).read_text(errors="replace").splitlines():
            name = line.split("(", 1)[0]
            if not started and line.startswith("read(0,"):
                started = True
            if name in total:
                total[name] += 1
                if not started:
                    startup[name] += 1
        os.unlink(self.view + log)
        return total, startup

    def locate(self, verb: str, syscall: str, after: str) -> int:
        """The invocation number of the first `syscall` at or after the first line of a clean run's trace
        that matches the regex `after` (e.g. the rename whose target is a port claim): a reproduction that
        does not depend on how many modules the plugin imports. The run is undone with a DEL."""
        if verb != "ADD":
            self.prev = self.call("ADD").doc
        log = f"{self.root}/locate.log"
        self.call(verb, trace=log)
        n, armed = 0, False
        try:
            for line in Path(self.view + log).read_text(errors="replace").splitlines():
                armed = armed or re.search(after, line) is not None
                if line.split("(", 1)[0] == syscall:
                    n += 1
                    if armed:
                        return n
        finally:
            os.unlink(self.view + log)
            self.call("DEL")
            self.prev = None
        raise AssertionError(f"no {syscall} after {after!r} in a clean {verb}")

    # ---------------------------------------------------------------------------------------- snapshot
    def snapshot(self) -> dict[str, Any]:
        """Everything an attachment could leave behind, normalised (no counters, no handles)."""
        def lines(argv: list[str]) -> list[str]:
            out = _sh(["ip", "netns", "exec", self.host, *argv]).stdout.decode(errors="replace")
            out = re.sub(r"packets \d+ bytes \d+", "", out)
            out = re.sub(r"\[\d+:\d+\]", "", out).replace(" linkdown", "")
            # The kernel's own link-local and multicast routes come and go with the bridge's carrier and DAD.
            return sorted(ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("#")
                          and "fe80::" not in ln and "ff00::/8" not in ln)

        def links(ns: str) -> list[str]:
            if ns not in self.spaces.made:
                return []
            out = _sh(["ip", "-n", ns, "-o", "link"]).stdout.decode(errors="replace")
            return sorted(ln.split(": ")[1].split("@")[0] for ln in out.splitlines())

        files: list[str] = []
        for top in ("data", "state"):
            base = self.path(top)
            if not base.exists():
                continue
            for dirpath, dirnames, filenames in os.walk(base):
                rel = os.path.relpath(dirpath, self.view + self.root)
                files += [f"{rel}/{d}/" for d in dirnames]
                files += [f"{rel}/{f}" for f in filenames if f not in ("lock", "stamp", "iptables.lock")
                          and not f.startswith("last_reserved_ip.")]
        return {
            "host links": links(self.host),
            "container links": links(self.ctr),
            "host routes": lines(["ip", "route", "show", "table", "all"]),
            "host rules": lines(["ip", "rule"]),
            "nft": lines(["nft", "list", "ruleset"]),
            "files": sorted(files),
        }

    def leftovers(self) -> list[str]:
        """What differs from the baseline: each as 'what: +added -removed'."""
        now = self.snapshot()
        out = []
        for key, base in self.baseline.items():
            added = sorted(set(now[key]) - set(base))
            gone = sorted(set(base) - set(now[key]))
            if added or (gone and key != "container links"):
                out.append(f"{key}: " + " ".join([f"+{a}" for a in added] + [f"-{g}" for g in gone]))
        return out

    def leases(self) -> dict[str, str]:
        """Lease files of the network and their content."""
        folder = self.path("data", "faultnet")
        if not folder.exists():
            return {}
        return {p.name: p.read_bytes().decode(errors="replace") for p in folder.iterdir()
                if p.name[0].isdigit() or ":" in p.name}


# ------------------------------------------------------------------------------------ a mount namespace

class PrivateMounts:
    """A process holding a mount namespace of its own (``unshare -m``, slave propagation: nothing mounted in
    it reaches the machine's namespace), for small tmpfs mounts under a scenario's temp folder. The plugins
    run in it through ``nsenter``; this process reads its files through /proc/<pid>/root. Killed (by its
    PID) on close, which unmounts everything."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "slave", "sleep", "3600"])
        mine = os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{self.proc.pid}/ns/mnt") == mine:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError("unshare -m did not start")
            time.sleep(0.01)

    @property
    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-m"]

    @property
    def view(self) -> str:
        return f"/proc/{self.proc.pid}/root"

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return _sh([*self.prefix, *argv], check=check)

    def tmpfs(self, where: str, size: str) -> None:
        assert where.startswith(tempfile.gettempdir() + "/cnit-"), where  # only ever our own temp folders
        self.sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", where)

    def fill(self, where: str) -> None:
        """Take every free block of the file system holding `where`."""
        self.sh("sh", "-c", f"cat /dev/zero > {where}/.fill 2>/dev/null; true")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> PrivateMounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def on_tmpfs(sc: Scenario, mounts: PrivateMounts, *, what: str = "", size: str = "1m") -> None:
    """Put the scenario's files (all, or its `what` subfolder) on a small tmpfs and run its plugin calls in
    that mount namespace."""
    where = os.path.join(sc.root, what) if what else sc.root
    os.makedirs(where, exist_ok=True)
    mounts.tmpfs(where, size)
    sc.prefix, sc.view = mounts.prefix, mounts.view


# ------------------------------------------------------------------------------------------- one case

@dataclass
class Case:
    plugin: str
    verb: str
    syscall: str
    index: int
    fault: str
    startup: bool = False
    calls: int = 0  # calls of `syscall` in a clean run of the verb (the group's size before any stride)
    outcome: str = ""
    injected: bool = False
    problems: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def name(self) -> str:
        return f"{self.plugin} {self.verb} {self.syscall}#{self.index} {self.fault}"


def answer_problem(run: Run, what: str, *, allow_kill: bool = False) -> str:
    """'' when the run answered as a plugin must; else what is wrong."""
    out = run.outcome
    if out in ("ok", "answer-lost"):
        return ""
    if out == "killed":
        return "" if allow_kill else f"{what}: killed"
    if out.startswith("code-"):
        doc = run.doc or {}
        code = doc.get("code")
        if code in MEANINGFUL:
            return ""
        return f"{what}: code {code} ({doc.get('msg')}: {str(doc.get('details', ''))[:160]})"
    tail = run.stderr.strip().splitlines()[-3:]
    return f"{what}: {out} ({' | '.join(tail)[:300]})"


def run_case(sc: Scenario, case: Case) -> Case:
    """Fault one call, then DEL and DEL again; record the outcome and check the invariants."""
    sc.ensure_ctr()
    faulted = _fault_add(sc, case) if case.verb == "ADD" else _fault_other(sc, case)
    case.outcome, case.injected = faulted.outcome, faulted.injected
    problem = answer_problem(faulted, case.verb, allow_kill=True)
    if problem:
        case.problems.append(problem)
        case.detail = (faulted.stdout.strip() + " " + faulted.stderr.strip()[-400:]).strip()
    for n in (1, 2):
        dl = sc.call("DEL")
        if dl.rc != 0:
            msg = answer_problem(dl, f"DEL {n}") or f"DEL {n} failed: {dl.stdout.strip()}"
            case.problems.append(msg)
    sc.prev = None
    case.leftovers = sc.leftovers()
    case.problems += [f"left after DEL: {x}" for x in case.leftovers]
    if case.leftovers:  # start the next case clean: a fresh container namespace, the baseline's files back
        _reset(sc)
    return case


def _fault_add(sc: Scenario, case: Case) -> Run:
    """The faulted ADD: a success must leave a whole attachment (CHECK), no lease may name another."""
    faulted = sc.call("ADD", syscall=case.syscall, index=case.index, fault=case.fault)
    if faulted.rc == 0 and faulted.doc is not None:
        sc.prev = faulted.doc
        chk = sc.call("CHECK")
        if chk.rc != 0:
            case.problems.append(f"ADD succeeded but the attachment is not whole: CHECK {chk.stdout.strip()}")
    if not faulted.killed:
        for ip, text in sc.leases().items():
            if text != f"{sc.cid}\r\n{sc.ifname}":
                case.problems.append(f"lease {ip} holds {text!r}")
        if faulted.rc != 0 and faulted.outcome != "answer-lost":  # a failed ADD rolls back everything itself
            case.problems += [f"left after failed ADD: {x}" for x in sc.leftovers()]
    return faulted


def _fault_other(sc: Scenario, case: Case) -> Run:
    """A clean ADD, then the faulted verb. A DEL that answers ok must have removed everything: a runtime never
    repeats a DEL that succeeded."""
    add = sc.call("ADD")
    if add.rc != 0:
        case.problems.append(f"setup ADD failed: {add.stdout.strip()}")
    sc.prev = add.doc
    faulted = sc.call(case.verb, syscall=case.syscall, index=case.index, fault=case.fault)
    if case.verb == "DEL" and faulted.rc == 0:
        case.problems += [f"left after DEL answered ok: {x}" for x in sc.leftovers()]
    return faulted


def _reset(sc: Scenario) -> None:
    """Put a scenario that leaked back to a clean state (a new scenario's worth of state): the next case
    must not be blamed for this one's leftovers."""
    if sc.ctr in sc.spaces.made:
        sc.spaces.made.remove(sc.ctr)
        _sh(["ip", "netns", "del", sc.ctr])
    host = sc.host
    sc.spaces.made.remove(host)
    _sh(["ip", "netns", "del", host])
    shutil.rmtree(sc.root, ignore_errors=True)
    os.makedirs(sc.root)
    sc.host = sc.spaces.new("cnit-fhost")
    sc.ctr = sc.spaces.new("cnit-fctr")
    sc.prepare()


# ------------------------------------------------------------------------------------------- the sweep

def indices(total: int, startup: int, *, sample: int | None) -> list[int]:
    """Which invocation numbers to fault: all of them (sample None), or `sample` spread over the calls after
    startup (first and last always in) plus the first startup call."""
    after = list(range(startup + 1, total + 1))
    if sample is None:
        return list(range(1, total + 1))
    if len(after) <= sample:
        picked = after
    else:
        step = (len(after) - 1) / (sample - 1) if sample > 1 else 1
        picked = sorted({after[round(i * step)] for i in range(sample)})
    return ([1] if startup and sample else []) + picked


def strided(total: int, startup: int, *, stride: int = 1, startup_stride: int = 1) -> list[int]:
    """Every `startup_stride`th of the interpreter's start-up calls (1, 1+s, ...) and every `stride`th of the
    calls after it (startup+1, startup+1+n, ...): a deterministic thinning of the full sweep."""
    return [*range(1, startup + 1, max(1, startup_stride)), *range(startup + 1, total + 1, max(1, stride))]


def sweep(plugin: str, verb: str, syscall: str, fault: str, *, sample: int | None,
          scenario: Scenario | None = None, progress: bool = False, stride: int = 1, startup_stride: int = 1,
          log: Any = None, done: set[str] | None = None) -> list[Case]:
    own = scenario is None
    sc = scenario or Scenario(plugin)
    try:
        if not sc.baseline:
            sc.prepare()
        if verb != "ADD":  # count the verb after an ADD
            sc.prev = sc.call("ADD").doc
        total, startup = sc.counts(verb, (syscall,))
        sc.call("DEL")  # the counted ADD's attachment, or a no-op after a counted DEL
        sc.prev = None
        out = []
        picked = (indices(total[syscall], startup[syscall], sample=sample) if sample is not None else
                  strided(total[syscall], startup[syscall], stride=stride, startup_stride=startup_stride))
        for n in picked:
            if done is not None and Case(plugin, verb, syscall, n, fault).name in done:
                continue  # --resume: this case is in the --cases file already
            case = run_case(sc, Case(plugin, verb, syscall, n, fault, startup=n <= startup[syscall],
                                     calls=total[syscall]))
            out.append(case)
            if log is not None:
                log.write(json.dumps(case.__dict__) + "\n")
                log.flush()
            if progress:
                print(f"  {case.name}: {case.outcome}{' (not injected)' if not case.injected else ''}"
                      f"{' PROBLEMS: ' + '; '.join(case.problems) if case.problems else ''}", flush=True)
        return out
    finally:
        if own:
            sc.close()


# ------------------------------------------------------------------------------------------- the table

def table(cases: list[Case], title: str, note: str = "") -> str:
    """Markdown: per plugin, verb, syscall and fault kind: runs, injected, outcomes, problems, leftovers."""
    groups: dict[tuple[str, str, str, str], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.plugin, c.verb, c.syscall, c.fault), []).append(c)
    rows = ["| plugin | verb | syscall | fault | calls | runs | injected | outcomes | bad answers | leftovers |",
            "|---|---|---|---|---:|---:|---:|---|---:|---:|"]
    for (plugin, verb, syscall, fault), cs in groups.items():
        outcomes: dict[str, int] = {}
        for c in cs:
            key = c.outcome + (" (startup)" if c.startup else "")
            outcomes[key] = outcomes.get(key, 0) + 1
        bad = sum(1 for c in cs if any(not p.startswith("left after") for p in c.problems))
        left = sum(1 for c in cs if c.leftovers or any(p.startswith("left after") for p in c.problems))
        rows.append(f"| {plugin} | {verb} | {syscall} | {fault} | {max(c.calls for c in cs)} | {len(cs)} | "
                    f"{sum(c.injected for c in cs)} | "
                    + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) + f" | {bad} | {left} |")
    problems = [f"- `{c.name}`: " + "; ".join(c.problems) for c in cases if c.problems]
    if len(problems) > 40:  # a long sweep: one line per shape of problem, start-up and after apart
        problems = []
        for label, startup in (("after the interpreter's start", False), ("during the interpreter's start", True)):
            shapes: dict[str, list[Case]] = {}
            for c in cases:
                if c.problems and c.startup == startup:
                    shapes.setdefault(shape("; ".join(c.problems)), []).append(c)
            problems += [f"#### {label}: {sum(map(len, shapes.values()))} runs", ""]
            for text, cs in sorted(shapes.items(), key=lambda kv: -len(kv[1])):
                names = ", ".join(f"`{c.name}`" for c in cs[:3]) + (", ..." if len(cs) > 3 else "")
                problems.append(f"- {len(cs)}x {text[:400]} ({names})")
            problems.append("")
    text = "\n".join([f"## {title}", "", *([note, ""] if note else []), *rows, "", "### Problems", "",
                      *(problems or ["none"]), ""])
    return portable(text)


def shape(problem: str) -> str:
    """A problem's text without what varies between runs of the same defect (PIDs, errno texts, addresses)."""
    problem = re.sub(r"^(ADD|DEL|CHECK|GC): ", "", problem)
    problem = re.sub(r"PYI-\d+", "PYI-N", problem)
    problem = re.sub(r"\[Errno \d+\] (No space left on device|Input/output error|Permission denied)", "[Errno E]",
                     problem)
    problem = re.sub(r"No space left on device|Input/output error|Permission denied", "<errno>", problem)
    problem = re.sub(r"\b\d+\.\d+\.\d+\.\d+\b", "<ip>", problem)
    return re.sub(r"tmp\d+|cnit-[\w-]+", "<tmp>", problem)


def portable(text: str) -> str:
    """The table names no path of this machine: the repo and the interpreter's prefix are written relative."""
    for path, name in ((str(REPO) + "/", ""), (sys.base_prefix, "<python>"), (os.path.realpath(sys.base_prefix),
                                                                             "<python>")):
        text = text.replace(path, name)
    return re.sub(r'"/tmp/[^"/]+/(cni_ignite/[^"]+)"', r'"\1"', text)


def load_cases(files: list[str]) -> list[Case]:
    """The cases of --cases files; a resumed shard may hold a case twice: the last run counts."""
    merged: dict[str, Case] = {}
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line:
                case = Case(**json.loads(line))
                merged[case.name] = case
    return list(merged.values())


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=("quick", "long"), default="quick")
    ap.add_argument("--plugin", action="append", choices=("bridge", "ipam"))
    ap.add_argument("--verb", action="append", choices=("ADD", "DEL", "GC", "CHECK"))
    ap.add_argument("--syscall", action="append", choices=(*SYSCALLS, *EXTRA))
    ap.add_argument("--fault", action="append", choices=KINDS)
    ap.add_argument("--sample", type=int, default=None, help="faulted indices per group (default: all for long)")
    ap.add_argument("--stride", type=int, default=1,
                    help="long: fault every Nth call after the interpreter's start (default 1: every call)")
    ap.add_argument("--startup-stride", type=int, default=1,
                    help="long: fault every Nth call of the interpreter's start (default 1: every call)")
    ap.add_argument("--extra-stride", type=int, default=0,
                    help="long: --stride for the EXTRA syscalls (read, close, ...; default: --stride)")
    ap.add_argument("--extra-startup-stride", type=int, default=0,
                    help="long: --startup-stride for the EXTRA syscalls (default: --startup-stride)")
    ap.add_argument("--cases", default="", help="append every case as a JSON line to this file (shards)")
    ap.add_argument("--resume", action="store_true", help="skip the cases the --cases file holds already")
    ap.add_argument("--merge", nargs="+", default=[], help="no run: the table of these --cases files")
    ap.add_argument("--title", default="", help="the table's title (default: what was run)")
    ap.add_argument("--note", default="", help="a paragraph under the title (what was covered)")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if args.merge:
        cases = load_cases(args.merge)
        text = table(cases, args.title or f"Fault sweep ({len(cases)} runs)", args.note)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 1 if any(c.problems for c in cases) else 0
    sample = args.sample if args.sample is not None else (None if args.profile == "long" else 4)
    cases: list[Case] = []
    started = time.monotonic()
    done = None
    if args.resume and args.cases and os.path.exists(args.cases):
        done = {c.name for c in load_cases([args.cases])}
    log = open(args.cases, "a") if args.cases else None  # noqa: SIM115 - closed below
    try:
        for plugin in args.plugin or ["bridge", "ipam"]:
            with Scenario(plugin) as sc:
                for verb in args.verb or ["ADD", "DEL"]:
                    for syscall in args.syscall or list(SYSCALLS if args.profile == "quick" else (*SYSCALLS, *EXTRA)):
                        extra = syscall in EXTRA
                        stride = (args.extra_stride or args.stride) if extra else args.stride
                        sstride = (args.extra_startup_stride or args.startup_stride) if extra else args.startup_stride
                        for fault in args.fault or list(KINDS):
                            print(f"{plugin} {verb} {syscall} {fault}", flush=True)
                            cases += sweep(plugin, verb, syscall, fault, sample=sample, scenario=sc, progress=True,
                                           stride=stride, startup_stride=sstride, log=log, done=done)
    finally:
        if log is not None:
            log.close()
    text = table(cases, args.title or f"Fault sweep ({args.profile}, {len(cases)} runs, "
                 f"{time.monotonic() - started:.0f} s, plugins from {os.path.relpath(plugin_dir(), REPO)})", args.note)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if any(c.problems for c in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
