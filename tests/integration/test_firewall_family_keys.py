"""Item 9: what the port registry and iptables accept, nft accepts too. Host ports are keyed by family
(0.0.0.0:9090 of one attachment and [::]:9090 of another are two mappings), and address elements by
the host interface (two networks with the same subnet on two bridges). The second ADD succeeds, each
mapping's traffic reaches its own container, and DEL of one leaves the other's rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from cni_ignite.firewall.base import Owner

if TYPE_CHECKING:
    from firewallenv import Topo

pytestmark = pytest.mark.privileged
BACKENDS = ["iptables", "nftables"]


def maps(host_ip: str, host_port: int, port: int) -> dict[str, object]:
    return {"runtimeConfig": {"portMappings": [{"hostPort": host_port, "containerPort": port, "protocol": "tcp",
                                                "hostIP": host_ip}]}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_host_port_for_any_ipv4_and_any_ipv6_address_reaches_two_containers(topo: Topo, backend: str) -> None:
    a, b = topo.conf(backend, **maps("0.0.0.0", 9090, 81)), topo.conf(backend, **maps("::", 9090, 82))
    topo.add(a, cid="a", addrs=("10.99.0.2/24", "fd99::2/64"))
    topo.add(b, cid="b", addrs=("10.99.0.3/24", "fd99::3/64"))  # nft layout 1: "File exists"
    topo.serve(topo.c1, "tcp", 81)
    topo.serve(topo.c2, "tcp", 82)
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 9090) == "192.0.2.2"  # only c1 listens on 81
    assert topo.reach(topo.outside, "tcp", "2001:db8::1", 9090) == "2001:db8::2"  # only c2 listens on 82
    checks = topo.fw(topo.req("check", a, cid="a", addrs=("10.99.0.2/24", "fd99::2/64")),
                     topo.req("check", b, cid="b", addrs=("10.99.0.3/24", "fd99::3/64")))
    assert [c["problems"] for c in checks] == [[], []]
    topo.fw(topo.req("del", topo.conf(backend), cid="a"))
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 9090) is None
    assert topo.reach(topo.outside, "tcp", "2001:db8::1", 9090) == "2001:db8::2"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_networks_with_the_same_subnet_on_two_bridges(topo: Topo, backend: str) -> None:
    c3 = topo.second_bridge("br1", port=82)
    before = topo.ruleset()
    a, b = topo.conf(backend, **maps("", 8081, 81)), topo.conf(backend, **maps("", 8082, 82))
    req_a = topo.req("add", a, cid="a", addrs=("10.99.0.2/24",), network="net1")
    req_b = topo.req("add", b, cid="b", addrs=("10.99.0.2/24",), network="net2", hostIface="br1")
    topo.fw(req_a, req_b)  # the same address twice: nft layout 1 failed the second ADD
    topo.serve(topo.c1, "tcp", 81)
    topo.serve(c3, "tcp", 82)
    topo.serve(topo.outside, "tcp", 82)
    topo.serve(topo.outside, "tcp", 9000)
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) == "192.0.2.2"  # to c1 on br0
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8082) == "192.0.2.2"  # to c3 on br1
    assert topo.reach(topo.c1, "tcp", "192.0.2.2", 9000) == "192.0.2.1"  # each masqueraded
    assert topo.reach(c3, "tcp", "192.0.2.2", 82) == "192.0.2.1"
    checks = topo.fw({**req_a, "verb": "check"}, {**req_b, "verb": "check"})
    assert [c["problems"] for c in checks] == [[], []]
    topo.fw({**req_a, "verb": "del", "conf": topo.conf(backend)})  # exact: b's elements stay
    assert Owner("net2", "b", "eth0").key in topo.ruleset()
    assert topo.fw({**req_b, "verb": "check"})[0]["problems"] == []
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8082) == "192.0.2.2"
    assert topo.reach(c3, "tcp", "192.0.2.2", 82) == "192.0.2.1"
    assert topo.reach(topo.outside, "tcp", "192.0.2.1", 8081) is None
    topo.fw({**req_b, "verb": "del", "conf": topo.conf(backend)})
    after = topo.ruleset()
    if backend == "nftables" and "table inet cni_ignite" not in before:  # the table and base chains stay
        after = after[:after.index("table inet cni_ignite")] if "table inet cni_ignite" in after else after
        assert Owner("net1", "a", "eth0").key not in after
    assert "cni-ignite:" not in after
