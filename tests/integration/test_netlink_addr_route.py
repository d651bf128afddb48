"""Addresses and routes through Rtnl, inside a throwaway container netns with a veth to a host netns."""

from __future__ import annotations

import json
import os
import socket
from ipaddress import ip_address, ip_interface, ip_network
from typing import TYPE_CHECKING, Any

import pytest
from nsutil import in_ns, path

from cni_ignite.netlink.netns import open_netns
from cni_ignite.netlink.ops import RT_SCOPE_LINK, LinkNotFound
from cni_ignite.netlink.rtnl import Rtnl

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged


@pytest.fixture
def eth0(netns: Namespaces) -> Iterator[tuple[str, Rtnl, int]]:
    """(container netns name, Rtnl in it, ifindex of its eth0 (up, peer in a host netns, also up))."""
    host, cont = netns.new(), netns.new()
    fd = open_netns(path(cont))
    try:
        with Rtnl(path(host)) as h:
            veth = h.create_veth("veth0", "eth0", peer_netns_fd=fd)
            h.set_link(veth.index, up=True)
        with Rtnl(fd) as c:
            link = c.require("eth0")
            c.set_link(link.index, up=True)
            yield cont, c, link.index
    finally:
        os.close(fd)


def ip_addrs(ns: str, dev: str) -> set[str]:
    out: list[dict[str, Any]] = json.loads(in_ns(ns, ["ip", "-j", "addr", "show", "dev", dev]).stdout)
    return {f"{a['local']}/{a['prefixlen']}" for a in out[0]["addr_info"]}


def ip_routes(ns: str, *args: str, table: str = "main") -> list[dict[str, Any]]:
    argv = ["ip", "-j", *args, "route", "show", "table", table]
    out: list[dict[str, Any]] = json.loads(in_ns(ns, argv).stdout)
    return out


def test_v4_and_v6_addresses_are_added_once_and_deleted_once(eth0: tuple[str, Rtnl, int]) -> None:
    ns, rtnl, idx = eth0
    v4, v6 = ip_interface("10.22.0.5/16"), ip_interface("fd00:22::5/64")
    assert rtnl.add_addr(idx, v4) is True
    assert rtnl.add_addr(idx, v6, nodad=True) is True
    assert rtnl.add_addr(idx, v4) is False
    assert {"10.22.0.5/16", "fd00:22::5/64"} <= ip_addrs(ns, "eth0")
    brd = json.loads(in_ns(ns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout)[0]["addr_info"][0]
    assert brd["broadcast"] == "10.22.255.255"
    found = {a.address: a for a in rtnl.addrs(idx)}
    assert not found[v6].tentative  # nodad: usable at once
    assert not found[v6].dadfailed
    assert {a.address for a in rtnl.addrs(idx, socket.AF_INET)} == {v4}
    assert rtnl.del_addr(idx, v4) is True
    assert rtnl.del_addr(idx, v4) is False
    assert "10.22.0.5/16" not in ip_addrs(ns, "eth0")


def test_wait_dad_returns_when_no_address_is_tentative(eth0: tuple[str, Rtnl, int]) -> None:
    _, rtnl, idx = eth0
    rtnl.add_addr(idx, ip_interface("fd00:23::5/64"), nodad=True)
    settled = rtnl.wait_dad(idx, timeout=3)
    assert ip_interface("fd00:23::5/64") in {a.address for a in settled}


def test_default_routes_via_gateway_are_added_listed_and_deleted(eth0: tuple[str, Rtnl, int]) -> None:
    ns, rtnl, idx = eth0
    rtnl.add_addr(idx, ip_interface("10.22.0.5/16"))
    rtnl.add_addr(idx, ip_interface("fd00:22::5/64"), nodad=True)
    assert rtnl.add_route(ip_network("0.0.0.0/0"), ip_address("10.22.0.1"), idx) is True
    assert rtnl.add_route(ip_network("0.0.0.0/0"), ip_address("10.22.0.1"), idx) is False
    assert rtnl.add_route(ip_network("::/0"), ip_address("fd00:22::1"), idx) is True
    assert ip_routes(ns, "-4")[0]["dst"] == "default"
    assert ip_routes(ns, "-4")[0]["gateway"] == "10.22.0.1"
    assert any(r["dst"] == "default" and r["gateway"] == "fd00:22::1" for r in ip_routes(ns, "-6"))
    default = next(r for r in rtnl.routes(socket.AF_INET) if r.dst.prefixlen == 0)
    assert (default.gw, default.index, default.table) == (ip_address("10.22.0.1"), idx, 254)
    assert rtnl.del_route(ip_network("0.0.0.0/0"), ip_address("10.22.0.1"), idx) is True
    assert rtnl.del_route(ip_network("0.0.0.0/0"), ip_address("10.22.0.1"), idx) is False
    assert all(r["dst"] != "default" for r in ip_routes(ns, "-4"))


def test_route_without_gateway_is_link_scoped_and_carries_metric_mtu_and_table(
    eth0: tuple[str, Rtnl, int],
) -> None:
    ns, rtnl, idx = eth0
    assert rtnl.add_route(ip_network("192.168.50.0/24"), None, idx, priority=77, mtu=1280)
    assert rtnl.add_route(ip_network("192.168.60.0/24"), None, idx, table=1000)
    main = {r["dst"]: r for r in ip_routes(ns, "-4", "-d")}
    assert main["192.168.50.0/24"]["scope"] == "link"
    assert main["192.168.50.0/24"]["metric"] == 77
    assert main["192.168.50.0/24"]["metrics"][0]["mtu"] == 1280
    assert "192.168.60.0/24" not in main
    assert [r["dst"] for r in ip_routes(ns, "-4", table="1000")] == ["192.168.60.0/24"]
    ours = next(r for r in rtnl.routes(socket.AF_INET) if str(r.dst) == "192.168.50.0/24")
    assert (ours.scope, ours.priority, ours.mtu) == (RT_SCOPE_LINK, 77, 1280)
    assert [str(r.dst) for r in rtnl.routes(socket.AF_INET, table=1000)] == ["192.168.60.0/24"]
    assert rtnl.del_route(ip_network("192.168.60.0/24"), table=1000)


def test_error_when_route_names_a_missing_link(eth0: tuple[str, Rtnl, int]) -> None:
    _, rtnl, _ = eth0
    with pytest.raises(LinkNotFound):
        rtnl.add_route(ip_network("192.168.70.0/24"), None, 9999)


def test_noprefixroute_address_adds_no_on_link_route_and_onlink_gateway_needs_none(
    eth0: tuple[str, Rtnl, int],
) -> None:
    ns, rtnl, idx = eth0
    assert rtnl.add_addr(idx, ip_interface("10.24.0.5/16"), noprefixroute=True)
    assert rtnl.add_addr(idx, ip_interface("fd00:24::5/64"), nodad=True, noprefixroute=True)
    assert {"10.24.0.5/16", "fd00:24::5/64"} <= ip_addrs(ns, "eth0")
    assert not [r for r in ip_routes(ns, "-4") if r["dst"] == "10.24.0.0/16"]
    assert not [r for r in ip_routes(ns, "-6") if r["dst"] == "fd00:24::/64"]
    assert rtnl.add_route(ip_network("0.0.0.0/0"), ip_address("10.24.0.1"), idx, onlink=True)
    assert rtnl.add_route(ip_network("::/0"), ip_address("fd00:24::1"), idx, onlink=True)
    assert "onlink" in ip_routes(ns, "-4")[0]["flags"]


def test_route_to_names_the_fib_entry_and_none_when_nothing_or_a_blackhole_routes(
    eth0: tuple[str, Rtnl, int],
) -> None:
    ns, rtnl, idx = eth0
    rtnl.add_addr(idx, ip_interface("10.25.0.5/16"))
    rtnl.add_route(ip_network("10.26.0.7/32"), None, idx)
    subnet = rtnl.route_to(ip_address("10.25.3.3"))
    assert subnet is not None and (str(subnet.dst), subnet.index, subnet.type) == ("10.25.0.0/16", idx, 1)
    host = rtnl.route_to(ip_address("10.26.0.7"))
    assert host is not None and str(host.dst) == "10.26.0.7/32"
    local = rtnl.route_to(ip_address("10.25.0.5"))
    assert local is not None and local.type == 2
    assert rtnl.route_to(ip_address("10.27.0.1")) is None
    in_ns(ns, ["ip", "route", "add", "blackhole", "10.27.0.0/16"])
    assert rtnl.route_to(ip_address("10.27.0.1")) is None
    assert rtnl.route_to(ip_address("fd00:99::1")) is None
