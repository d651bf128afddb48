"""A throwaway "host" for real container runtimes: its own network *and* mount namespace.

``RuntimeHost`` creates a network namespace and one long-lived holder process in it
(``ip netns exec NS unshare -m --propagation private sleep infinity``). Inside the holder's private mount
namespace it re-mounts the cgroup v1 hierarchies as ``/proc/1/mounts`` shows them (``ip netns exec``
remounts ``/sys``, which hides them), puts throwaway overlays on ``/var/lib`` (libcni's result cache) and
a tmpfs on ``/run/netns`` (container namespaces), and can shadow hard-coded folders such as
``/etc/cni/net.d`` and ``/opt/cni/bin`` with bind mounts of temp folders. Every command runs through
``nsenter -t <holder> -m -n``, so nothing in the real ``/etc/cni``, ``/opt/cni``, ``/var/lib`` or the root
network namespace changes.

``close()`` kills, by PID, only what this host started: the processes it spawned, whatever still lives
in its mount or network namespace (and their descendants), then the holder; it then deletes the netns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MOUNT_OPTS_DROPPED = {"rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "seclabel"}


class HostError(RuntimeError):
    """The throwaway host could not be built; the message names the command and its stderr."""


def _run(argv: Sequence[str], *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise HostError(f"`{' '.join(argv)}` failed ({res.returncode}): {res.stderr.strip()} {res.stdout.strip()}")
    return res


def _ns_id(pid: int | str, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def root_cgroup_mounts(mounts_file: str = "/proc/1/mounts") -> list[tuple[str, str, str]]:
    """(fstype, mountpoint, options) of each cgroup hierarchy under /sys/fs/cgroup, as the root ns has them."""
    found = []
    for line in Path(mounts_file).read_text().splitlines():
        _dev, point, fstype, opts, *_ = line.split()
        if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup/"):
            kept = [o for o in opts.split(",") if o not in MOUNT_OPTS_DROPPED]
            found.append((fstype, point, ",".join(kept)))
    return found


class RuntimeHost:
    """A network + mount namespace pair that a container engine can live in; see the module docstring.

    ``cgroup2``: also mount the cgroup2 ("unified") hierarchy. crun 1.8 rejects the v1+v2 hybrid layout,
    so it is left out by default.
    """

    def __init__(self, work: Path | None = None, *, cgroup2: bool = False, prefix: str = "cnirt") -> None:
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.own_work = work is None  # a folder made here is removed by close()
        self.work = Path(work or tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.cgroup2 = cgroup2
        self.holder: subprocess.Popen[bytes] | None = None
        self.spawned: list[subprocess.Popen[bytes]] = []
        self.netns_made = False
        self.mounts: list[str] = []
        self.mount_argv: dict[str, list[str]] = {}  # how each of self.mounts was made, to re-apply it

    # -- life cycle -------------------------------------------------------------------------------------
    def __enter__(self) -> RuntimeHost:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self.holder is not None, "host not started"
        return self.holder.pid

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        _run(["ip", "netns", "add", self.name])
        self.netns_made = True
        _run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"])
        own_mnt = _ns_id("self", "mnt")
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "-m", "--propagation", "private", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:  # `ip` execs `unshare`, which execs `sleep`: same PID, wait for the last exec
            if self.holder.poll() is not None:
                err = self.holder.stderr.read().decode() if self.holder.stderr else ""
                raise HostError(f"holder `ip netns exec {self.name} unshare -m ... sleep` exited: {err.strip()}")
            comm = Path(f"/proc/{self.pid}/comm").read_text().strip() if Path(f"/proc/{self.pid}").exists() else ""
            if comm == "sleep" and _ns_id(self.pid, "mnt") not in ("", own_mnt):
                break
            if time.monotonic() > deadline:
                raise HostError("holder process did not reach `sleep` in its own mount namespace within 10 s")
            time.sleep(0.01)
        self._mount_cgroups()
        self.overlay("/var/lib")
        self.private_dir("/run/netns")

    def close(self) -> None:
        """Kill what this host started (by PID), then the holder; delete the netns. Safe to call twice."""
        try:
            self._kill_leftovers()
            self._unmount()
        finally:
            if self.holder is not None:
                if self.holder.poll() is None:
                    os.kill(self.holder.pid, signal.SIGKILL)
                self.holder.wait(timeout=10)
                if self.holder.stderr:
                    self.holder.stderr.close()
                self.holder = None
            for proc in self.spawned:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
            self.spawned.clear()
            if self.netns_made:
                subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
                self.netns_made = False
            if self.own_work and not os.environ.get("CNI_IGNITE_KEEP_WORK"):
                shutil.rmtree(self.work, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """SIGKILL our spawned processes and anything in our netns/mount ns (plus descendants), never the holder."""
        if self.holder is None or self.holder.poll() is not None:
            return
        mnt, net = _ns_id(self.pid, "mnt"), _ns_id(self.pid, "net")
        for _ in range(5):
            pids = {p.pid for p in self.spawned if p.poll() is None}
            parents: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                pid = int(entry)
                parents[pid] = _ppid(pid)
                if pid != self.pid and pid != os.getpid() and (
                        _ns_id(pid, "mnt") == mnt or _ns_id(pid, "net") == net):
                    pids.add(pid)
            grown = True
            while grown:  # descendants: container processes live in namespaces of their own
                more = {pid for pid, parent in parents.items() if parent in pids and pid not in pids}
                more.discard(self.pid)
                more.discard(os.getpid())
                grown = bool(more)
                pids |= more
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for proc in self.spawned:
                if proc.pid in pids:
                    proc.wait(timeout=10)
            time.sleep(0.1)

    def _unmount(self) -> None:
        """Best effort, newest first; whatever stays goes away with the holder's mount namespace anyway."""
        if self.holder is None or self.holder.poll() is not None:
            return
        for target in reversed(self.mounts):
            self.run(["umount", "-l", target], check=False, timeout=10)
        self.mounts.clear()
        self.mount_argv.clear()
        self.run(["umount", "-R", "-l", "/sys/fs/cgroup"], check=False, timeout=10)

    # -- mounts (all inside the holder's private mount namespace) ------------------------------------------
    def _mount_cgroups(self) -> None:
        self.sh("mount", "-t", "tmpfs", "-o", "mode=755", "cgroup-tmpfs", "/sys/fs/cgroup")
        for fstype, point, opts in root_cgroup_mounts():
            if fstype == "cgroup2" and not self.cgroup2:
                continue
            self.sh("mkdir", "-p", point)
            self.sh("mount", "-t", fstype, *(["-o", opts] if opts else []), fstype, point)

    def overlay(self, target: str) -> None:
        """A writable throwaway layer over an existing folder: writes land in the work dir, never below."""
        key = target.strip("/").replace("/", "_") or "root"
        upper, workdir = self.work / "overlay" / key / "upper", self.work / "overlay" / key / "work"
        upper.mkdir(parents=True, exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        self._mount(target, ["mount", "-t", "overlay", "-o", f"lowerdir={target},upperdir={upper},workdir={workdir}",
                             "rt-overlay", target])
        # An overlay shows its lower folder without the mounts below it (e.g. the private /run/netns under
        # an overlay on /run made for a missing /run/containerd): make them again on top, in order.
        below = target.rstrip("/") + "/"
        for earlier in list(self.mounts):
            if earlier.startswith(below):
                self.sh(*self.mount_argv[earlier])

    def bind(self, source: Path | str, target: str) -> None:
        """Shadow ``target`` with ``source``. A missing target is made inside an overlay on its nearest
        existing parent, so the real file system never gets it."""
        self._make_missing(target)
        self._mount(target, ["mount", "--bind", str(source), target])

    def private_dir(self, target: str) -> None:
        """A fresh tmpfs at ``target`` (made inside an overlay on its nearest existing parent if missing).
        A later overlay on a parent mounts a fresh one again: make these before anything is put in them."""
        self._make_missing(target)
        self._mount(target, ["mount", "-t", "tmpfs", "-o", "mode=755", "rt-tmpfs", target])

    def _mount(self, target: str, argv: list[str]) -> None:
        self.sh(*argv)
        self.mounts.append(target)
        self.mount_argv[target] = argv

    def _make_missing(self, target: str) -> None:
        if self.exists(target):
            return
        parent = Path(target).parent
        while not self.exists(str(parent)):
            parent = parent.parent
        self.overlay(str(parent))
        self.sh("mkdir", "-p", target)

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], check=False).returncode == 0

    # -- running things --------------------------------------------------------------------------------
    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-n", "--", *argv]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": PATH, "HOME": str(self.work), "LANG": "C.UTF-8", "TMPDIR": str(self.work / "tmp")}
        (self.work / "tmp").mkdir(exist_ok=True)
        env.update(extra or {})
        return env

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True,
            timeout: float = 60, input: str | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(self.argv(argv), env=self.env(env), capture_output=True, text=True, timeout=timeout,
                             check=False, input=input, cwd=cwd)
        if check and res.returncode != 0:
            raise HostError(f"`{' '.join(argv)}` failed ({res.returncode}):\n"
                            f"{res.stderr.strip()}\n{res.stdout.strip()}")
        return res

    def sh(self, *argv: str) -> str:
        return self.run(argv).stdout

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None
              ) -> subprocess.Popen[bytes]:
        """A long-running process in the host (e.g. a daemon); killed by PID on close()."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        try:
            proc = subprocess.Popen(self.argv(argv), env=self.env(env), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.spawned.append(proc)
        return proc

    # -- what tests look at ------------------------------------------------------------------------------
    def links(self) -> list[str]:
        out = self.sh("ip", "-o", "link", "show")
        return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]

    def veths(self) -> list[str]:
        out = self.sh("ip", "-o", "link", "show", "type", "veth")
        return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()]

    def rules(self) -> str:
        """Both firewalls' full rule sets in the host netns (empty parts when a tool is missing)."""
        text = ""
        for argv in (["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"]):
            if shutil.which(argv[0]):
                text += self.run(argv, check=False).stdout
        return text

    def http_get(self, url: str, timeout: float = 10) -> str:
        """Fetch a page from inside the host namespace (busybox wget; its -T segfaults, so `timeout`)."""
        res = self.run(["timeout", str(int(timeout)), "busybox", "wget", "-q", "-O", "-", url], check=False,
                       timeout=timeout + 5)
        if res.returncode != 0:
            raise HostError(f"wget {url} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout
