"""Three hosts (throwaway namespaces on one underlay bridge) run the node agent against a real etcd."""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING

import pytest
from multinode import PREFIX, ping, tcp_roundtrip, wait_until

if TYPE_CHECKING:
    from multinode import Cluster, Host

pytestmark = pytest.mark.privileged


def converged(hosts: list[Host], backend: str) -> bool:
    subs = {h.name: h.wait_subnet().subnet for h in hosts}
    for h in hosts:
        routes = h.routes()
        want = {str(subs[o.name]) for o in hosts if o is not h}
        if set(routes) != want:
            return False
        if backend == "vxlan" and len(h.neighbours()) != len(want):
            return False
    return True


@pytest.mark.parametrize("cluster", ["vxlan", "host-gw"], indirect=True)
def test_three_hosts_route_to_each_others_containers(cluster: Cluster) -> None:
    hosts = [cluster.add_host() for _ in range(3)]
    for h in hosts:
        h.start_agent()
    subnets = [h.wait_subnet() for h in hosts]
    assert len({s.subnet for s in subnets}) == 3
    for s in subnets:
        assert s.network == ipaddress.IPv4Network("10.61.0.0/16")
        assert s.subnet.prefixlen == 24 and s.subnet.subnet_of(s.network)
        assert s.mtu == (1450 if cluster.backend == "vxlan" else 1500)
    text = hosts[0].subnet_file.read_text()
    assert text.startswith(f"FLANNEL_NETWORK=10.61.0.0/16\nFLANNEL_SUBNET={subnets[0].subnet.network_address + 1}/24\n")
    assert "FLANNEL_IPMASQ=true\n" in text  # the agent masquerades (default --ip-masq)

    # etcd holds flannel's formats
    config = json.loads(cluster.etcd.get_prefix(f"{PREFIX}/config")[f"{PREFIX}/config"])
    assert config["Network"] == "10.61.0.0/16" and config["SubnetLen"] == 24
    assert config["SubnetMin"] == "10.61.1.0" and config["SubnetMax"] == "10.61.255.0"
    assert config["Backend"]["Type"] == cluster.backend
    leases = cluster.etcd.subnets()
    for h, s in zip(hosts, subnets, strict=True):
        value = leases[f"{s.subnet.network_address}-24"]
        assert value["PublicIP"] == h.ip and value["BackendType"] == cluster.backend
        if cluster.backend == "vxlan":
            mac = json.loads(h.sh("ip", "-j", "link", "show", "flannel.1"))[0]["address"]
            assert value["BackendData"] == {"VNI": 1, "VtepMAC": mac}

    wait_until("routes to every peer", lambda: converged(hosts, cluster.backend))
    for h in hosts:
        for other, s in zip(hosts, subnets, strict=True):
            if other is h:
                continue
            route = h.routes()[str(s.subnet)]
            if cluster.backend == "vxlan":
                assert route["dev"] == "flannel.1" and route["gateway"] == str(s.subnet.network_address)
                assert "onlink" in route["flags"]
                mac = leases[f"{s.subnet.network_address}-24"]["BackendData"]["VtepMAC"]
                assert h.neighbours()[str(s.subnet.network_address)] == mac
                assert h.fdb()[mac] == other.ip
            else:
                assert route["dev"] == "eth0" and route["gateway"] == other.ip

    ctrs = [h.add_container() for h in hosts]
    for i, (ns, _ip) in enumerate(ctrs):
        for j, (_other_ns, other_ip) in enumerate(ctrs):
            if i != j:
                assert ping(ns, other_ip), f"container on host{i + 1} cannot ping {other_ip} on host{j + 1}"
    # a host reaches a container on another host directly (from its own flannel.1/.0 or its underlay address)
    assert ping(hosts[0].ns, ctrs[1][1])
    assert ping(hosts[2].ns, ctrs[0][1])
    # TCP across hosts, container to container, larger than one packet
    out = tcp_roundtrip(ctrs[0][0], ctrs[2][0], ctrs[2][1])
    assert out.startswith(f"echo from {ctrs[2][1]} to {ctrs[0][1]}: xxx"), out
    assert out.endswith(str(3000 + len(f"echo from {ctrs[2][1]} to {ctrs[0][1]}: "))), out
