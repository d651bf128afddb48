"""containerd 1.6 (Debian) with `ctr run --cni`: ADD, traffic, and the DEL with an empty CNI_NETNS.

Debian's ctr hard-codes /etc/cni/net.d and /opt/cni/bin; both are shadowed by bind mounts of temp folders
(a *copy* of the plugin folder) inside the throwaway host's private mount namespace, as are /run/containerd
(shim sockets) and /var/lib (libcni's result cache). The daemon runs from a config.toml whose root,
state and sockets are in the work dir, and is killed by PID at the end. Containers run through crun with
its cgroup manager disabled (a two-line runtime wrapper), so no cgroup is created or removed.

What ctr sends: ADD with CNI_NETNS=/proc/<pid>/ns/net, no capability args; when the foreground task exits,
DEL with CNI_NETNS="" and the cached prevResult. The container's netns is gone by then, so the host veth
goes with it: the plugin only has to release the lease and remove its rules.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from runtimes.common import PAGE, Network, make_rootfs
from runtimes.support import (
    assert_nothing_left,
    assert_worker_served,
    container_address,
    flavour_params,
    need,
    plugin_dir,
    remove_workdir,
    short_workdir,
    start_host,
    unavailable,
    wait_for,
)

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from runtimes.host import RuntimeHost

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
NAMESPACE = "default"


class Containerd:
    def __init__(self, host: RuntimeHost, work: Path) -> None:
        self.host, self.dir = host, work / "containerd"
        self.dir.mkdir()
        self.sock = self.dir / "containerd.sock"
        self.config = self.dir / "config.toml"
        self.config.write_text(f"""version = 2
root = "{self.dir}/root"
state = "{self.dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.sock}"

[ttrpc]
  address = "{self.sock}.ttrpc"

[debug]
  address = "{self.dir}/debug.sock"
""")
        self.runtime = self.dir / "crun-no-cgroups"
        self.runtime.write_text("#!/bin/sh\nexec crun --cgroup-manager=disabled \"$@\"\n")
        self.runtime.chmod(0o755)
        self.log = self.dir / "containerd.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.daemon = self.host.spawn(["containerd", "--config", str(self.config)], log=self.log)
        deadline = time.monotonic() + 20
        while True:
            res = self.host.run(["ctr", "-a", str(self.sock), "version"], check=False)
            if res.returncode == 0:
                return
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                unavailable(f"containerd did not start (`containerd --config {self.config}`, exit "
                            f"{self.daemon.poll()}; `ctr version`: {res.stderr.strip()}); its log:\n"
                            f"{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()  # by PID; RuntimeHost.close() also kills shims left in its namespaces
            self.daemon.wait(timeout=10)

    def ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.host.run(["ctr", "-a", str(self.sock), "-n", NAMESPACE, *args], check=check, timeout=timeout)

    def run_foreground(self, rootfs: Path, cid: str, *argv: str, cni: bool = True) -> subprocess.Popen[bytes]:
        """`ctr run --rm [--cni]` in the foreground (only then does ctr send DEL when the task exits)."""
        flags = ["--cni"] if cni else []
        return self.host.spawn(["ctr", "-a", str(self.sock), "-n", NAMESPACE, "run", "--rm", *flags, "--cgroup", "",
                                "--runc-binary", str(self.runtime), "--rootfs", str(rootfs), cid, *argv],
                               log=self.dir / f"ctr-run-{cid}.log")

    def task_running(self, cid: str) -> bool:
        tasks = self.ctr("task", "ls", check=False).stdout.splitlines()
        return any(line.split()[:1] == [cid] and "RUNNING" in line for line in tasks)

    def run_log(self, cid: str) -> str:
        path = self.dir / f"ctr-run-{cid}.log"
        return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("flavour", flavour_params())
def test_ctr_run_cni_add_traffic_and_del_with_empty_netns(flavour):
    need("containerd", "ctr", "crun", "busybox", "nsenter", "unshare")
    t0 = time.monotonic()
    work = short_workdir()
    plugins = plugin_dir(flavour, work / "cni-bin")
    net = Network(flavour, "ctrnet", work / "ipam")
    net.write(work / "net.d")
    rootfs = make_rootfs(work / "rootfs")
    host = start_host(work / "host", flavour)
    ctrd = Containerd(host, work)
    try:
        host.bind(work / "net.d", "/etc/cni/net.d")  # ctr: first file in /etc/cni/net.d
        host.bind(plugins, "/opt/cni/bin")  # ctr: plugins from /opt/cni/bin (then /usr/lib/cni)
        host.private_dir("/run/containerd")  # shim sockets
        ctrd.start()
        probe = ctrd.run_foreground(rootfs, "probe", "/bin/true", cni=False)
        if probe.wait(timeout=30) != 0:
            unavailable(f"`ctr run --rm --rootfs R probe /bin/true` (no CNI) exited {probe.returncode}: "
                        f"{ctrd.run_log('probe').strip()}\ncontainerd log:\n{ctrd.log.read_text()[-2000:]}")

        run = ctrd.run_foreground(rootfs, "web", "/bin/httpd", "-f", "-p", "80", "-h", "/www")
        wait_for("the ctr task to run", lambda: ctrd.task_running("web") or run.poll() is not None)
        assert run.poll() is None, f"ctr run --cni exited {run.returncode}:\n{ctrd.run_log('web')}"
        in_ctr = ctrd.ctr("task", "exec", "--exec-id", "ip", "web", "/bin/ip", "-o", "-4", "addr", "show", "eth0")
        address = container_address(in_ctr.stdout)
        assert f"inet {address}/16" in in_ctr.stdout, in_ctr.stdout
        assert net.leases(), f"no lease in {net.data_dir} while the task runs"
        assert len(host.veths()) == 1, host.veths()
        cache = host.sh("find", "/var/lib/cni/results", "-type", "f")
        assert f"{net.name}-{NAMESPACE}-web-eth0" in cache, cache

        assert host.http_get(f"http://{address}:80/") == PAGE
        routes = ctrd.ctr("task", "exec", "--exec-id", "rt", "web", "/bin/ip", "route").stdout
        assert "default via 10.61.0.1" in routes, routes

        ctrd.ctr("task", "kill", "-s", "SIGKILL", "web")
        rc = run.wait(timeout=30)
        assert rc == 137, f"ctr run exited {rc}:\n{ctrd.run_log('web')}"
        assert "error" not in ctrd.run_log("web").lower(), ctrd.run_log("web")  # a failed DEL is logged here
        assert host.sh("find", "/var/lib/cni/results", "-type", "f").strip() == "", \
            "the cached result survived, so DEL (CNI_NETNS='') did not succeed"
        assert ctrd.ctr("container", "ls", "-q").stdout.strip() == ""
        # Debian's bridge (v1.1.1) removes its masquerade rules on DEL only when it can still enter the
        # netns; with ctr's empty CNI_NETNS they stay (CNI-NOTES §2.1.2). Ours must not leave them.
        assert_nothing_left(host, net, address, rules=flavour != "reference")
        assert_worker_served(host)
    finally:
        try:
            ctrd.stop()
        finally:
            host.close()
            remove_workdir(work)
    assert time.monotonic() - t0 < 60
