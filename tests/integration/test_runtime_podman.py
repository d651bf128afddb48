"""podman 4.3 (Debian) with its CNI backend runs a busybox httpd on our network and cleans up on rm.

Everything lives in a throwaway host (tests/runtimes/host.py): podman's storage, run root, conflist and
plugin folder are temp dirs named in a containers.conf given through CONTAINERS_CONF; its CNI result
cache (/var/lib/cni) and container netns (/run/netns) land on throwaway mounts of the host's private
mount namespace. The image is a local busybox rootfs (--rootfs), so no registry is involved.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from runtimes.common import GATEWAY, PAGE, Network, make_rootfs
from runtimes.host import HostError
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
)

if TYPE_CHECKING:
    from pathlib import Path

    from runtimes.host import RuntimeHost

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
HOST_PORT = 18080


def containers_conf(work: Path, plugins: Path, net: Network) -> Path:
    path = work / "containers.conf"
    path.write_text(f"""[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
cgroups = "disabled"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
tmp_dir = "{work}/tmp"
lock_type = "file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{work}/net.d"
default_network = "{net.name}"
""")
    return path


class Podman:
    def __init__(self, host: RuntimeHost, work: Path, conf: Path) -> None:
        self.host, self.env = host, {"CONTAINERS_CONF": str(conf)}
        self.base = ["podman", "--root", f"{work}/storage", "--runroot", f"{work}/run", "--storage-driver", "vfs"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 40) -> str:
        return self.host.run([*self.base, *args], env=self.env, check=check, timeout=timeout).stdout

    def run(self, *args: str, timeout: float = 40):
        return self.host.run([*self.base, *args], env=self.env, check=False, timeout=timeout)


@pytest.mark.parametrize("flavour", flavour_params())
def test_podman_run_publish_fetch_rm(flavour):
    need("podman", "crun", "conmon", "busybox", "nsenter", "unshare")
    t0 = time.monotonic()
    work = short_workdir()
    plugins = plugin_dir(flavour, work / "cni-bin")
    net = Network(flavour, "podnet", work / "ipam")
    net.write(work / "net.d")
    rootfs = make_rootfs(work / "rootfs")
    host = start_host(work / "host", flavour)
    try:
        podman = Podman(host, work, containers_conf(work, plugins, net))
        probe = podman.run("run", "--rm", "--network", "none", "--rootfs", str(rootfs), "/bin/true")
        if probe.returncode != 0:
            unavailable(f"podman cannot run a container here (`podman run --network none --rootfs R /bin/true` "
                        f"exit {probe.returncode}): {probe.stderr.strip()}")

        res = podman.run("run", "-d", "--name", "web", "--network", net.name, "-p", f"{HOST_PORT}:80",
                         "--rootfs", str(rootfs), "/bin/httpd", "-f", "-p", "80", "-h", "/www")
        assert res.returncode == 0, f"podman run failed ({res.returncode}):\n{res.stderr}"
        address = container_address(podman(
            "inspect", "web", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"))
        in_ctr = podman("exec", "web", "/bin/ip", "-o", "-4", "addr", "show", "eth0")
        assert f"inet {address}/16" in in_ctr, in_ctr
        assert net.leases(), f"no lease in {net.data_dir} while the container runs"
        assert len(host.veths()) == 1, host.veths()

        # The page through the published port: loopback, the bridge's address, and straight to the container.
        for url in (f"http://127.0.0.1:{HOST_PORT}/", f"http://{GATEWAY}:{HOST_PORT}/", f"http://{address}:80/"):
            assert host.http_get(url) == PAGE, url
        # ... from another container through the host's published port ...
        fetch = f"timeout 5 wget -q -O - http://{GATEWAY}:{HOST_PORT}/"
        other = podman.run("run", "--rm", "--network", net.name, "--rootfs", str(rootfs), "/bin/sh", "-c", fetch)
        assert other.stdout == PAGE, f"another container could not fetch via the host port ({other.returncode}): " \
                                     f"{other.stderr}"
        # ... and from the container itself (hairpin). With br_netfilter active (bridge-nf-call-iptables=1 on
        # these machines) the DNAT'd packet is bridged back out of the port it came in on, so that port needs
        # hairpin mode: the reference conf sets hairpinMode, ours (promiscMode) gets it for mapped ports.
        hairpin = podman.run("exec", "web", "/bin/sh", "-c", fetch)
        assert hairpin.stdout == PAGE, f"hairpin fetch failed ({hairpin.returncode}): {hairpin.stderr}"

        cache = host.sh("find", "/var/lib/cni/results", "-type", "f")
        assert cache.strip(), "podman (libcni) left no result in its cache"

        rm = podman.run("rm", "-f", "-t", "0", "web")
        assert rm.returncode == 0, f"podman rm failed:\n{rm.stderr}"
        assert podman("ps", "-a", "-q").strip() == ""
        assert host.sh("find", "/var/lib/cni/results", "-type", "f").strip() == "", \
            f"cached result kept after rm, so the DEL failed (podman rm still exits 0):\n{rm.stderr}"
        assert host.sh("ls", "/run/netns").strip() == "", "container netns kept after rm"
        assert_nothing_left(host, net, address)
        with pytest.raises(HostError):
            host.http_get(f"http://127.0.0.1:{HOST_PORT}/", timeout=3)
        assert_worker_served(host)
    finally:
        host.close()
        remove_workdir(work)
    assert time.monotonic() - t0 < 60
