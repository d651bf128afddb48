"""Links through Rtnl against the real kernel, each test in its own throwaway "host" and "container" netns."""

from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING, Any

import pytest
from nsutil import in_ns, path

from cni_ignite.netlink.netns import open_netns
from cni_ignite.netlink.ops import BridgeVlan, LinkExists, LinkNotFound, LinkNotUp, NetlinkError
from cni_ignite.netlink.rtnl import Rtnl

if TYPE_CHECKING:
    from collections.abc import Iterator

    from nsutil import Namespaces

pytestmark = pytest.mark.privileged

def ip_link(ns: str, dev: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(in_ns(ns, ["ip", "-d", "-j", "link", "show", "dev", dev]).stdout)
    return out[0]

def has_link(ns: str, dev: str) -> bool:
    return in_ns(ns, ["ip", "link", "show", "dev", dev], check=False).returncode == 0

@pytest.fixture
def host(netns: Namespaces) -> Iterator[tuple[str, Rtnl]]:
    name = netns.new()
    with Rtnl(path(name)) as rtnl:
        yield name, rtnl

@pytest.fixture
def container(netns: Namespaces) -> Iterator[tuple[str, int]]:
    name = netns.new()
    fd = open_netns(path(name))
    try:
        yield name, fd
    finally:
        os.close(fd)


def test_bridge_is_created_once_and_then_reused(host: tuple[str, Rtnl]) -> None:
    ns, rtnl = host
    first = rtnl.create_bridge("cni0", mtu=1400)
    again = rtnl.create_bridge("cni0", mtu=9000)
    assert first.kind == "bridge"
    assert again.index == first.index
    assert again.mtu == 1400  # an existing bridge is reused as is
    info = ip_link(ns, "cni0")
    assert info["linkinfo"]["info_kind"] == "bridge"
    assert info["mtu"] == 1400
    assert info["linkinfo"]["info_data"]["stp_state"] == 0

def test_error_when_bridge_name_is_taken_by_another_kind(host: tuple[str, Rtnl]) -> None:
    ns, rtnl = host
    in_ns(ns, ["ip", "link", "add", "cni0", "type", "veth", "peer", "name", "cni0p"])
    with pytest.raises(LinkExists, match="not a bridge"):
        rtnl.create_bridge("cni0")

def test_veth_peer_is_created_directly_in_the_container_netns_as_eth0(
    host: tuple[str, Rtnl], container: tuple[str, int]
) -> None:
    ns, rtnl = host
    cns, cfd = container
    veth = rtnl.create_veth("veth1234", "eth0", peer_netns_fd=cfd, mtu=1450, mac_of_peer="02:42:0a:00:00:05")
    assert veth.kind == "veth"
    assert veth.mtu == 1450
    assert not has_link(ns, "eth0")
    peer = ip_link(cns, "eth0")
    assert peer["address"] == "02:42:0a:00:00:05"
    assert peer["mtu"] == 1450
    assert peer["ifindex"] == veth.peer_index
    with Rtnl(cfd) as inside:
        eth0 = inside.link("eth0")
        assert eth0 is not None
        assert eth0.mac == "02:42:0a:00:00:05"

def test_error_when_veth_name_is_taken_in_either_netns(
    host: tuple[str, Rtnl], container: tuple[str, int]
) -> None:
    ns, rtnl = host
    cns, cfd = container
    rtnl.create_veth("veth1", "eth0", peer_netns_fd=cfd)
    with pytest.raises(LinkExists):
        rtnl.create_veth("veth1", "eth1", peer_netns_fd=cfd)
    with pytest.raises(LinkExists):
        rtnl.create_veth("veth2", "eth0", peer_netns_fd=cfd)
    assert not has_link(ns, "veth2")
    assert not has_link(cns, "eth1")

def test_set_link_applies_master_up_mtu_mac_promisc_and_nomaster(
    host: tuple[str, Rtnl], container: tuple[str, int]
) -> None:
    ns, rtnl = host
    br = rtnl.create_bridge("br-t")
    veth = rtnl.create_veth("vethx", "eth0", peer_netns_fd=container[1])
    rtnl.set_link(veth.index, master=br.index, up=True, mtu=1300, mac="02:00:00:aa:bb:cc")
    rtnl.set_link(br.index, up=True, promisc=True)
    info = ip_link(ns, "vethx")
    assert info["master"] == "br-t"
    assert "UP" in info["flags"]
    assert info["mtu"] == 1300
    assert info["address"] == "02:00:00:aa:bb:cc"
    got = rtnl.link_by_index(veth.index)
    assert got is not None
    assert (got.master, got.up, got.mtu, got.mac) == (br.index, True, 1300, "02:00:00:aa:bb:cc")
    bridge = rtnl.link("br-t")
    assert bridge is not None
    assert bridge.promisc
    assert ip_link(ns, "br-t")["promiscuity"] >= 1
    rtnl.set_link(veth.index, nomaster=True, up=False)
    info = ip_link(ns, "vethx")
    assert "master" not in info
    assert "UP" not in info["flags"]

def test_bridge_port_flags_are_set_and_read_back(host: tuple[str, Rtnl], container: tuple[str, int]) -> None:
    ns, rtnl = host
    br = rtnl.create_bridge("br-p")
    veth = rtnl.create_veth("vethp", "eth0", peer_netns_fd=container[1])
    rtnl.set_link(veth.index, master=br.index)
    rtnl.set_brport(veth.index, hairpin=True, learning=False, isolated=True)
    port: dict[str, Any] = json.loads(in_ns(ns, ["bridge", "-d", "-j", "link", "show", "dev", "vethp"]).stdout)[0]
    assert (port["hairpin"], port["learning"], port["isolated"]) == (True, False, True)
    got = rtnl.link("vethp")
    assert got is not None
    assert got.port is not None
    assert (got.port.hairpin, got.port.learning, got.port.isolated) == (True, False, True)
    rtnl.set_brport(veth.index, hairpin=False)
    assert ip_link(ns, "vethp")["linkinfo"]["info_slave_data"]["hairpin"] is False

def test_bridge_attributes_are_changed(host: tuple[str, Rtnl]) -> None:
    ns, rtnl = host
    br = rtnl.create_bridge("br-a", forward_delay=200)
    rtnl.set_bridge(br.index, ageing_time=0, stp=False)
    data = ip_link(ns, "br-a")["linkinfo"]["info_data"]
    assert data["forward_delay"] == 200
    assert data["ageing_time"] == 0
    assert data["stp_state"] == 0
    got = rtnl.link("br-a")
    assert got is not None
    assert got.bridge is not None
    assert (got.bridge.forward_delay, got.bridge.ageing_time, got.bridge.stp) == (200, 0, False)

def _vlan_filtering_bridge(rtnl: Rtnl) -> int:
    try:
        return rtnl.create_bridge("br-v", vlan_filtering=True).index
    except NetlinkError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            pytest.skip("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)")
        raise

def bridge_vlans(ns: str, dev: str) -> dict[int, set[str]]:
    out: list[dict[str, Any]] = json.loads(in_ns(ns, ["bridge", "-j", "vlan", "show", "dev", dev]).stdout or "[]")
    vlans: dict[int, set[str]] = {}
    for entry in out:
        for v in entry.get("vlans", []):
            for vid in range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1):
                vlans[vid] = set(v.get("flags", []))
    return vlans

def test_bridge_vlan_dump_reads_ports_without_vlans_as_empty(
    host: tuple[str, Rtnl], container: tuple[str, int]
) -> None:
    _, rtnl = host
    br = rtnl.create_bridge("br-n")
    veth = rtnl.create_veth("vethn", "eth0", peer_netns_fd=container[1])
    rtnl.set_link(veth.index, master=br.index)
    assert rtnl.bridge_vlans(veth.index) in ([], [BridgeVlan(vid=1, pvid=True, untagged=True)])
    assert rtnl.bridge_vlans(9999) == []


def test_bridge_vlans_are_added_and_removed(host: tuple[str, Rtnl], container: tuple[str, int]) -> None:
    ns, rtnl = host
    br = _vlan_filtering_bridge(rtnl)
    veth = rtnl.create_veth("vethv", "eth0", peer_netns_fd=container[1])
    rtnl.set_link(veth.index, master=br)
    rtnl.bridge_vlan_add(veth.index, 100, pvid=True, untagged=True)
    rtnl.bridge_vlan_add(veth.index, 200, vid_end=203)
    rtnl.bridge_vlan_add(br, 100, bridge_self=True)
    assert rtnl.bridge_vlan_del(veth.index, 1)  # preserveDefaultVlan: false
    shown = bridge_vlans(ns, "vethv")
    assert shown[100] == {"PVID", "Egress Untagged"}
    assert set(shown) == {100, 200, 201, 202, 203}
    assert 100 in bridge_vlans(ns, "br-v")
    read = {v.vid: (v.pvid, v.untagged) for v in rtnl.bridge_vlans(veth.index)}
    assert read[100] == (True, True)
    assert read[201] == (False, False)
    rtnl.bridge_vlan_del(veth.index, 200, vid_end=203)
    assert set(bridge_vlans(ns, "vethv")) == {100}

def test_delete_link_is_idempotent_by_name_and_index(host: tuple[str, Rtnl], container: tuple[str, int]) -> None:
    ns, rtnl = host
    cns, cfd = container
    veth = rtnl.create_veth("vethd", "eth0", peer_netns_fd=cfd)
    assert rtnl.delete_link("vethd") is True
    assert not has_link(ns, "vethd")
    assert not has_link(cns, "eth0")  # the peer goes with it
    assert rtnl.delete_link("vethd") is False
    assert rtnl.delete_link(veth.index) is False
    br = rtnl.create_bridge("br-d")
    assert rtnl.delete_link(br.index) is True
    assert rtnl.delete_link(br.index) is False

def test_missing_link_reads_as_none_and_changes_raise_link_not_found(host: tuple[str, Rtnl]) -> None:
    _, rtnl = host
    assert rtnl.link("nope0") is None
    assert rtnl.link_by_index(9999) is None
    with pytest.raises(LinkNotFound):
        rtnl.set_link(9999, up=True)
    with pytest.raises(LinkNotFound):
        rtnl.require("nope0")

def test_links_lists_everything_in_the_netns_only(host: tuple[str, Rtnl], container: tuple[str, int]) -> None:
    _, rtnl = host
    rtnl.create_bridge("br-l")
    rtnl.create_veth("vethl", "eth0", peer_netns_fd=container[1])
    names = {link.name for link in rtnl.links()}
    assert names == {"lo", "br-l", "vethl"}

def test_host_veth_becomes_oper_up_once_both_ends_are_up(
    host: tuple[str, Rtnl], container: tuple[str, int]
) -> None:
    _, rtnl = host
    cns, cfd = container
    br = rtnl.create_bridge("br-o")
    rtnl.set_link(br.index, up=True)
    veth = rtnl.create_veth("vetho", "eth0", peer_netns_fd=cfd)
    rtnl.set_link(veth.index, master=br.index, up=True)
    with pytest.raises(LinkNotUp):
        rtnl.wait_oper_up(veth.index, timeout=0.05)  # the peer is still down
    in_ns(cns, ["ip", "link", "set", "eth0", "up"])
    assert rtnl.wait_oper_up(veth.index, timeout=2).oper_up
