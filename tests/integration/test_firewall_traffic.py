"""Real packets through the rules, both backends: masquerade, host ports from every direction (outside,
the host, 127.0.0.1, another container, the same container), hostIP limits, FORWARD policy DROP."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from nsutil import in_ns

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]


@pytest.mark.parametrize("backend", BACKENDS)
def test_masquerade_outside_sees_the_host_address(topo: Topo, backend: str) -> None:
    topo.add(topo.conf(backend))
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "192.0.2.1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_ip_masq_the_container_address_leaves_unchanged(topo: Topo, backend: str) -> None:
    topo.add(topo.conf(backend, ipMasq=False))
    in_ns(topo.outside, ["ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.1"])
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "10.99.0.2"


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_port_reaches_the_container_from_everywhere(topo: Topo, backend: str) -> None:
    out = topo.add(topo.conf(backend, runtimeConfig={"portMappings": MAPS}))
    assert out["routeLocalnet"] == ["br0"]
    topo.serve(topo.c1, "tcp", 80)
    topo.serve(topo.c1, "udp", 53)
    for proto, port in (("tcp", 8080), ("udp", 5353)):
        assert topo.reach(topo.outside, proto, "192.0.2.1", port) == "192.0.2.2", proto
        assert topo.reach(topo.host, proto, "192.0.2.1", port) is not None, proto
        assert topo.reach(topo.host, proto, "10.99.0.1", port) is not None, proto
        assert topo.reach(topo.host, proto, "127.0.0.1", port) == "10.99.0.1", proto  # SNAT of 127.0.0.1
        assert topo.reach(topo.c2, proto, "192.0.2.1", port) == "10.99.0.1", proto  # hairpin, masqueraded
        assert topo.reach(topo.c1, proto, "192.0.2.1", port) == "10.99.0.1", proto  # to itself via the host


@pytest.mark.parametrize("backend", BACKENDS)
def test_ipv6_host_port_reaches_the_container(topo: Topo, backend: str) -> None:
    topo.add(topo.conf(backend, runtimeConfig={"portMappings": MAPS[:1]}), addrs=("10.99.0.2/24", "fd99::2/64"))
    topo.serve(topo.c1, "tcp", 80)
    assert topo.reach(topo.outside, "tcp", "2001:db8::1", 8080) == "2001:db8::2"
    assert topo.reach(topo.c2, "tcp", "2001:db8::1", 8080) == "fd99::1"  # hairpin, masqueraded


@pytest.mark.parametrize("backend", BACKENDS)
def test_host_ip_limits_the_mapping_to_that_address(topo: Topo, backend: str) -> None:
    maps = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "192.0.2.1"}]
    topo.add(topo.conf(backend, runtimeConfig={"portMappings": maps}))
    topo.serve(topo.c1, "tcp", 80)
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) == "192.0.2.2"
    assert topo.reach(topo.host, "tcp", "192.0.2.1", 8080) is not None
    assert topo.reach(topo.host, "tcp", "10.99.0.1", 8080) is None
    assert topo.reach(topo.host, "tcp", "127.0.0.1", 8080) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_localnet_guard_drops_outside_packets_to_127(topo: Topo, backend: str) -> None:
    topo.add(topo.conf(backend, runtimeConfig={"portMappings": MAPS[:1]}))
    topo.serve(topo.host, "tcp", 7000)  # listens on every host address, 127.0.0.1 included
    in_ns(topo.outside, ["ip", "route", "add", "127.1.0.0/16", "via", "192.0.2.1"])
    in_ns(topo.host, ["sysctl", "-qw", "net.ipv4.conf.up0.route_localnet=1"])  # the CVE-2020-8558 setting
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 7000) == "192.0.2.2"
    assert topo.reach(topo.outside, "tcp", "127.1.0.1", 7000) is None


def test_forward_policy_drop_still_lets_container_traffic_through(topo: Topo) -> None:
    # iptables only: in nftables an accept in our table cannot override a drop in another table (see the
    # report); auto picks iptables when iptables rules exist for that reason.
    in_ns(topo.host, ["iptables", "-P", "FORWARD", "DROP"])
    topo.serve(topo.c1, "tcp", 80)
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) is None  # the drop policy works
    topo.add(topo.conf("iptables", runtimeConfig={"portMappings": MAPS[:1]}))
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "192.0.2.1"
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8080) == "192.0.2.2"
    in_ns(topo.host, ["iptables", "-A", "CNI-IGNITE-ADMIN", "-s", "10.99.0.2", "-j", "DROP"])  # admin overrides
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) is None


def test_auto_picks_iptables_when_iptables_rules_exist_else_nftables(topo: Topo) -> None:
    topo.add(topo.conf("auto"))
    assert "nftables" in topo.fw({"verb": "list", "conf": topo.conf("auto")})[0]["attachments"][0]
    in_ns(topo.c2, ["true"])
    topo.fw(topo.req("del", topo.conf("auto")))
    in_ns(topo.host, ["nft", "delete", "table", "inet", "cni_ignite"])
    in_ns(topo.host, ["iptables", "-P", "FORWARD", "DROP"])
    topo.add(topo.conf("auto"))
    assert "iptables" in topo.fw({"verb": "list", "conf": topo.conf("auto")})[0]["attachments"][0]
