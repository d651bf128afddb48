"""The network-wide masquerade (flannel's --ip-masq): egress leaving the whole network is masqueraded by the agent's
own nft table; VM-to-VM across hosts keeps the VM's source address; --no-ip-masq removes it."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING

import pytest
from multinode import OUTSIDE_ADDR, ping, tcp_roundtrip, wait_until
from nsutil import in_ns
from test_node_cluster import converged

from cni_ignite.node.masq import COMMENT, IPT_CHAIN, NFT_TABLE

pytestmark = pytest.mark.privileged

if TYPE_CHECKING:
    from multinode import Cluster, Host
    from nsutil import Namespaces


def masq_rules(host: Host) -> list[str] | None:
    """The rules of our table in the host's namespace (None: no table)."""
    out = host.sh("nft", "-j", "list", "table", "ip", NFT_TABLE, check=False)
    if not out:
        return None
    items = json.loads(out)["nftables"]
    return [json.dumps(i["rule"]["expr"]) for i in items if "rule" in i]


@pytest.mark.parametrize("cluster", ["vxlan", "host-gw"], indirect=True)
def test_egress_is_masqueraded_and_cross_host_traffic_keeps_the_vm_address(cluster: Cluster) -> None:
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        h.start_agent()
    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    assert all(h.wait_subnet().ipmasq for h in hosts)
    (c1, ip1), (c2, ip2) = hosts[0].add_container(), hosts[1].add_container()
    outside = cluster.add_outside()

    # leaving the network: the outside computer sees host1's underlay address (it has no route to 10.61/16)
    out = tcp_roundtrip(c1, outside, OUTSIDE_ADDR)
    assert out.startswith(f"echo from {OUTSIDE_ADDR} to {hosts[0].ip}: xxx"), out
    # inside the network, across hosts: the VM's own address, both ways
    out = tcp_roundtrip(c1, c2, ip2)
    assert out.startswith(f"echo from {ip2} to {ip1}: xxx"), out
    out = tcp_roundtrip(c2, c1, ip1)
    assert out.startswith(f"echo from {ip1} to {ip2}: xxx"), out
    rules = masq_rules(hosts[0])
    assert rules is not None and len(rules) == 4
    assert sum("masquerade" in r for r in rules) == 2

    # SIGTERM leaves the masquerade in place, as the rest of the data plane
    assert hosts[0].stop_agent(signal.SIGTERM) == 0
    assert masq_rules(hosts[0]) == rules
    assert ping(c1, OUTSIDE_ADDR)

    # --no-ip-masq: the table goes, the subnet file says so, and egress is no longer masqueraded
    hosts[0].start_agent("--no-ip-masq")
    wait_until("FLANNEL_IPMASQ=false", lambda: "FLANNEL_IPMASQ=false\n" in hosts[0].subnet_file.read_text())
    wait_until("our table to go", lambda: masq_rules(hosts[0]) is None)
    assert not ping(c1, OUTSIDE_ADDR, wait=1), "egress still reaches the outside without masquerade"
    assert ping(c1, ip2)
    assert masq_rules(hosts[1]) is not None  # the other host's is its own


def test_a_port_mapped_on_host_b_is_reached_from_host_a_and_its_containers(cluster: Cluster) -> None:
    hosts = [cluster.add_host() for _ in range(2)]
    for h in hosts:
        h.start_agent()
    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    c1, _ip1 = hosts[0].add_container()
    mapping = {"portMappings": [{"hostPort": 18090, "containerPort": 7070, "protocol": "tcp"}]}
    c2, ip2 = hosts[1].add_container(runtimeConfig=mapping)
    # from host A itself: B's DNAT, then "from outside the network to this host's subnet: return" (no masquerade)
    out = tcp_roundtrip(hosts[0].ns, c2, ip2, 7070, via=(hosts[1].ip, 18090))
    assert out.startswith(f"echo from {ip2} to {hosts[0].ip}: xxx"), out
    # from a container on host A: leaves the network on A (masqueraded to A's address), then B's DNAT
    out = tcp_roundtrip(c1, c2, ip2, 7070, via=(hosts[1].ip, 18090))
    assert out.startswith(f"echo from {ip2} to {hosts[0].ip}: xxx"), out


def test_without_nft_the_same_rules_go_to_iptables_and_are_removed(netns: Namespaces) -> None:
    """The iptables fallback (hosts without nft), in a throwaway namespace: chain, rules, one jump; remove() takes
    exactly those away and leaves a rule of someone else's in POSTROUTING."""
    ns = netns.new("cnit-ipt")
    in_ns(ns, ["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE"])
    code = ("import ipaddress, sys; from cni_ignite.node import masq; masq.backend = lambda: 'iptables'; "
            "n, s = ipaddress.IPv4Network('10.61.0.0/16'), ipaddress.IPv4Network('10.61.7.0/24'); "
            "masq.install(n, s) if sys.argv[1] == 'install' else masq.remove()")
    for _ in range(2):  # twice: idempotent (one jump, four rules)
        in_ns(ns, [sys.executable, "-c", code, "install"])
    rules = in_ns(ns, ["iptables", "-w", "-t", "nat", "-S"]).stdout.decode().splitlines()
    ours = [r for r in rules if IPT_CHAIN in r]
    assert ours[0] == f"-N {IPT_CHAIN}"
    assert sum(r.startswith("-A POSTROUTING") and r.endswith(f"-j {IPT_CHAIN}") for r in rules) == 1
    assert [r for r in ours if r.startswith(f"-A {IPT_CHAIN}")] == [
        f'-A {IPT_CHAIN} -s 10.61.0.0/16 -d 10.61.0.0/16 -m comment --comment "{COMMENT}" -j RETURN',
        f'-A {IPT_CHAIN} ! -s 10.61.0.0/16 -d 10.61.7.0/24 -m comment --comment "{COMMENT}" -j RETURN',
        f'-A {IPT_CHAIN} -s 10.61.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "{COMMENT}" -j MASQUERADE '
        "--random-fully",
        f'-A {IPT_CHAIN} ! -s 10.61.0.0/16 -d 10.61.0.0/16 -m comment --comment "{COMMENT}" -j MASQUERADE '
        "--random-fully"]
    in_ns(ns, [sys.executable, "-c", code, "remove"])
    rules = in_ns(ns, ["iptables", "-w", "-t", "nat", "-S"]).stdout.decode().splitlines()
    assert not [r for r in rules if IPT_CHAIN in r]
    assert "-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE" in rules
