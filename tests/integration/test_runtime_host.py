"""The throwaway host the runtime tests live in: what it changes stays inside it, and close() leaves nothing."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from runtimes.host import RuntimeHost, root_cgroup_mounts
from runtimes.support import remove_workdir, short_workdir

pytestmark = pytest.mark.privileged


def net_of(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def test_host_is_private_and_close_removes_everything():
    work = short_workdir()
    marker = f"cnirt-{uuid.uuid4().hex[:8]}"
    opt_cni_existed = Path("/opt/cni").exists()
    real_netd = sorted(os.listdir("/etc/cni/net.d")) if Path("/etc/cni/net.d").is_dir() else None
    host = RuntimeHost(work / "host")
    try:
        host.start()
        holder = host.pid
        assert host.links() == ["lo"], host.links()
        # /var/lib is a throwaway overlay: readable as before, writes stay inside.
        host.sh("mkdir", "-p", f"/var/lib/cni/{marker}")
        assert not Path(f"/var/lib/cni/{marker}").exists()
        assert host.exists("/var/lib/dpkg/status")
        # Hard-coded folders shadowed by temp dirs, including ones that do not exist outside.
        netd, bindir = work / "net.d", work / "bin"
        netd.mkdir()
        bindir.mkdir()
        (netd / f"{marker}.conflist").write_text("{}")
        host.bind(netd, "/etc/cni/net.d")
        host.bind(bindir, "/opt/cni/bin")
        assert host.sh("ls", "/etc/cni/net.d").split() == [f"{marker}.conflist"]
        assert host.exists("/opt/cni/bin") and host.exists("/opt/pypi") == Path("/opt/pypi").exists()
        assert Path("/opt/cni").exists() == opt_cni_existed
        if real_netd is not None:
            assert sorted(os.listdir("/etc/cni/net.d")) == real_netd
        # The cgroup v1 hierarchies are there (ip netns exec hid them); cgroup2 is left out for crun.
        mounted = host.sh("cat", "/proc/self/mounts")
        for fstype, point, _ in root_cgroup_mounts():
            assert (f" {point} {fstype} " in mounted) == (fstype == "cgroup"), (point, mounted)
        # Container netns go to a private /run/netns.
        host.sh("ip", "netns", "add", marker)
        assert not Path(f"/run/netns/{marker}").exists()
        # Something that detaches itself is found through its namespaces and killed by PID.
        host.run(["sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"])
        spawned = host.spawn(["sleep", "600"])
        sleeps = subprocess.run(["pgrep", "-x", "sleep"], capture_output=True, text=True, check=False).stdout.split()
        host_net = os.readlink(f"/proc/{holder}/ns/net")
        detached = [int(p) for p in sleeps if net_of(p) == host_net and int(p) not in (holder, spawned.pid)]
        assert len(detached) == 1, detached
    finally:
        host.close()
        remove_workdir(work)
    for pid in (holder, spawned.pid, *detached):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], pid
    assert host.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                           check=False).stdout
    host.close()  # twice is fine
