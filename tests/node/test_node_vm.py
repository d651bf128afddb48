"""A real QEMU guest on host A pings a real guest on host B over the multi-node network (VXLAN through the agents),
reaches a container on host B with its own address, and the outside world masqueraded. The guests come from
tests/vm (used read-only): a Debian cloud kernel + busybox initramfs on the tap our ignite-bridge made."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import pytest
from cnirun import call, source_bin_dir
from multinode import OUTSIDE_ADDR, wait_until
from nsutil import path
from test_node_cluster import converged

if TYPE_CHECKING:
    from pathlib import Path

    from multinode import Cluster, Host

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def vm_guest_module() -> Any:
    try:
        from vm import guest
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"tests/vm is not importable: {exc}")
    if not guest.DEFAULT_CACHE_DIR.is_dir():
        pytest.skip(f"needs the guest kernel cache {guest.DEFAULT_CACHE_DIR} (make vm-demo fetches it)")
    try:
        guest.ensure_guest_assets()
    except guest.GuestError as exc:
        pytest.skip(f"guest assets unavailable: {exc}")
    return guest


def add_vm(host: Host, guest: Any, vm_id: str) -> tuple[str, Any]:
    """CNI ADD in VM mode (tc-redirect tap) with the shipped multi-node network; returns (netns, vmconf)."""
    ns = host.cluster.spaces.new("cnit-vm")
    host.containers.append(ns)
    bindir = source_bin_dir()
    conf = host.network_conf(vm={"mode": "tc-redirect", "tap": "tap0"})
    res = call(bindir / "ignite-bridge", "ADD", conf, host_ns=host.ns, container_id=vm_id, netns=path(ns),
               cni_path=str(bindir)).ok()
    return ns, guest.vm_net_conf(res.out, vm_id)


def test_a_guest_on_host_a_pings_a_guest_on_host_b(cluster: Cluster, tmp_path: Path) -> None:
    guest = vm_guest_module()
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        h.start_agent()
    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    image = guest.prepare_guest()
    vms = []
    try:
        nets = [add_vm(h, guest, f"mn-vm{i + 1}") for i, h in enumerate(hosts)]
        for i, (_ns, net) in enumerate(nets):
            vms.append(guest.boot(net.netns_path, net.tap_name, net.vm_mac, net.ip_boot_param(),
                                  tmp_path / f"console-{i + 1}.log", image=image))
        ips = [vm.wait_ready(120) for vm in vms]
        assert [str(n.address.ip) for _ns, n in nets] == ips
        for h, ip in zip(hosts, ips, strict=True):
            guest.wait_ping(h.ns, ip, 60)

        # guest A -> guest B across hosts (and back), through flannel.1 on both
        body = guest.http_get(hosts[0].ns, guest.guest_ping_url(ips[0], ips[1]), timeout=20)
        assert body.rstrip().endswith("RESULT ok"), body
        body = guest.http_get(hosts[1].ns, guest.guest_ping_url(ips[1], ips[0]), timeout=20)
        assert body.rstrip().endswith("RESULT ok"), body

        # guest A -> a container on host B: seen with guest A's own address (no masquerade inside the network)
        ctr_b, ctr_b_ip = hosts[1].add_container()
        echo_b = guest.start_echo_server(ctr_b, tmp_path / "echo-b", 8080)
        # guest A -> the outside world: masqueraded to host A's underlay address
        outside = cluster.add_outside()
        echo_out = guest.start_echo_server(outside, tmp_path / "echo-out", 8080)
        try:
            body = guest.http_get(hosts[0].ns, guest.guest_fetch_url(ips[0], f"{ctr_b_ip}:8080/cgi-bin/whoami"),
                                  timeout=20)
            assert guest.remote_addr(body) == ips[0], body
            body = guest.http_get(hosts[0].ns, guest.guest_fetch_url(ips[0], f"{OUTSIDE_ADDR}:8080/cgi-bin/whoami"),
                                  timeout=20)
            assert guest.remote_addr(body) == hosts[0].ip, body
        finally:
            guest.stop_process(echo_b)
            guest.stop_process(echo_out)
    finally:
        for vm in vms:
            vm.stop()
    for h in hosts:
        h.stop_agent(signal.SIGTERM)
