"""Message encoding/decoding of the netlink layer, without root.

Golden bytes for the bridge messages were captured with ``strace -x -e sendmsg`` from iproute2 6.x
(``bridge vlan add ...`` / ``bridge link set ...``); the kernel accepts exactly these.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import ip_address, ip_interface, ip_network

import pytest
from pyroute2_oracle import ifaddrmsg, ifinfmsg, rtmsg

from cni_ignite.netlink import _msg, _tc
from cni_ignite.netlink._nl import HDR_SIZE, iter_nla, nest, nla


def whole(msg_type: int, body: bytes) -> bytes:
    """A full message (header + body), as the kernel would send it back."""
    return struct.pack("=IHHII", HDR_SIZE + len(body), msg_type, 0, 1, 0) + body


@pytest.mark.parametrize(
    ("body", "golden"),
    [
        (_msg.bridge_vlan(4, 100, pvid=True, untagged=True, vid_end=None, bridge_self=False),
         "070000000400000000000000000000000c001a000800020006006400"),
        (_msg.bridge_vlan(4, 200, pvid=False, untagged=False, vid_end=203, bridge_self=False),
         "0700000004000000000000000000000014001a00080002000800c800080002001000cb00"),
        (_msg.bridge_vlan(2, 100, pvid=False, untagged=False, vid_end=None, bridge_self=True),
         "0700000002000000000000000000000014001a0006000000020000000800020000006400"),
        (_msg.set_brport(4, [("IFLA_BRPORT_MODE", 1), ("IFLA_BRPORT_LEARNING", 0), ("IFLA_BRPORT_ISOLATED", 1)]),
         "070000000400000000000000000000001c000c80050004000100000005000800000000000500210001000000"),
    ],
    ids=["vlan-pvid-untagged", "vlan-range", "vlan-self", "brport-hairpin-learning-isolated"],
)
def test_bridge_messages_match_what_iproute2_sends(body: bytes, golden: str) -> None:
    assert body.hex() == golden


def test_veth_peer_carries_its_name_netns_fd_mtu_and_mac() -> None:
    body = _msg.new_veth("veth1", "eth0", peer_netns_fd=7, mtu=1400, mac=None, peer_mac="02:00:00:00:00:05")
    msg = ifinfmsg(whole(16, body))
    msg.decode()
    assert msg.get("ifname") == "veth1"
    assert msg.get("mtu") == 1400
    assert msg.get(("linkinfo", "kind")) == "veth"
    peer = msg.get(("linkinfo", "data")).get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth0"
    assert peer.get_attr("IFLA_NET_NS_FD") == 7
    assert peer.get_attr("IFLA_MTU") == 1400
    assert peer.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:05"


def test_set_link_sets_only_the_flags_it_changes() -> None:
    msg = ifinfmsg(whole(16, _msg.set_link(3, up=True, master=None, mtu=None, mac=None, promisc=False)))
    msg.decode()
    assert (msg["index"], msg["flags"], msg["change"]) == (3, 0x1, 0x1 | 0x100)
    assert msg["attrs"] == []
    nomaster = ifinfmsg(whole(16, _msg.set_link(3, up=None, master=0, mtu=None, mac=None, promisc=None)))
    nomaster.decode()
    assert (nomaster["change"], nomaster.get("master")) == (0, 0)


def test_set_link_carries_the_alias_that_marks_an_attachments_links() -> None:
    msg = ifinfmsg(whole(16, _msg.set_link(3, up=True, master=5, mtu=None, mac=None, promisc=None,
                                          alias="cni-ignite:abc")))
    msg.decode()
    assert (msg.get("ifalias"), msg.get("master")) == ("cni-ignite:abc", 5)


def test_link_reply_alias_is_parsed_and_empty_when_absent() -> None:
    for attrs, alias in (([("IFLA_IFNAME", "tap0"), ("IFLA_IFALIAS", "cni-ignite:abc")], "cni-ignite:abc"),
                         ([("IFLA_IFNAME", "tap0")], "")):
        reply = ifinfmsg()
        reply["index"] = 4
        reply["attrs"] = attrs
        reply.encode()
        assert _msg.parse_link(bytes(reply.data)).alias == alias


def test_link_reply_is_parsed_and_a_same_numbered_veth_peer_is_recognised() -> None:
    reply = ifinfmsg()
    reply["index"] = 2
    reply["flags"] = 0x1 | 0x100
    reply["attrs"] = [
        ("IFLA_IFNAME", "eth0"), ("IFLA_MTU", 1450), ("IFLA_ADDRESS", "02:42:0a:00:00:05"),
        ("IFLA_OPERSTATE", "UP"), ("IFLA_LINK_NETNSID", 0), ("IFLA_MASTER", 5),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth")]}),
    ]
    reply.encode()
    link = _msg.parse_link(bytes(reply.data))
    assert (link.index, link.name, link.kind, link.mtu, link.mac) == (2, "eth0", "veth", 1450, "02:42:0a:00:00:05")
    assert (link.up, link.promisc, link.oper_up, link.master, link.netns_id) == (True, True, True, 5, 0)
    assert link.peer_index == 2  # the kernel omits IFLA_LINK when it equals the own index


def test_ipv4_address_gets_a_broadcast_except_on_point_to_point_prefixes() -> None:
    msg = ifaddrmsg(whole(20, _msg.addr_change(2, ip_interface("10.22.0.5/16"))))
    msg.decode()
    assert (msg["family"], msg["prefixlen"], msg["index"]) == (socket.AF_INET, 16, 2)
    assert msg.get_attr("IFA_LOCAL") == "10.22.0.5"
    assert msg.get_attr("IFA_BROADCAST") == "10.22.255.255"
    p2p = ifaddrmsg(whole(20, _msg.addr_change(2, ip_interface("10.22.0.5/31"))))
    p2p.decode()
    assert p2p.get_attr("IFA_BROADCAST") is None


def test_nodad_ipv6_address_carries_the_flag() -> None:
    msg = ifaddrmsg(whole(20, _msg.addr_change(2, ip_interface("fd00::5/64"), nodad=True)))
    msg.decode()
    assert msg["family"] == socket.AF_INET6
    assert msg.get_attr("IFA_FLAGS") == 0x02
    assert msg.get_attr("IFA_BROADCAST") is None


def test_route_in_a_large_table_uses_rta_table_and_default_has_no_dst() -> None:
    body = _msg.route_change(ip_network("0.0.0.0/0"), ip_address("10.0.0.1"), 2, table=1000, priority=5,
                             scope=0, proto=3, mtu=1280, src=None, onlink=False)
    route = _msg.parse_route(whole(24, body))
    assert route.table == 1000
    assert (route.gw, route.index, route.priority, route.mtu) == (ip_address("10.0.0.1"), 2, 5, 1280)
    assert str(route.dst) == "0.0.0.0/0"
    msg = rtmsg(whole(24, body))
    msg.decode()
    assert msg["table"] == 252
    assert msg.get_attr("RTA_DST") is None


def test_redirect_filter_round_trips_to_its_target() -> None:
    body = _tc.redirect_filter(3, 7)
    parsed = _tc.parse(whole(_tc.RTM_NEWTFILTER, body))
    assert (parsed.ifindex, parsed.parent, parsed.kind, parsed.redirects_to) == (3, 0xFFFF0000, "u32", (7,))
    _, _, _, _, _, _, info = struct.unpack_from("=BBHiIII", body)
    assert info & 0xFFFF == socket.htons(0x0003)  # protocol all


def test_redirect_filter_matches_everything_and_steals_the_frame() -> None:
    body = _tc.redirect_filter(3, 7)
    attrs = dict(iter_nla(body, 20))
    options = dict(iter_nla(attrs[_tc.TCA_OPTIONS]))
    flags, _, nkeys = struct.unpack_from("=BBB", options[_tc.TCA_U32_SEL])
    mask, val = struct.unpack_from("=II", options[_tc.TCA_U32_SEL], 16)
    assert (flags, nkeys, mask, val) == (_tc.TC_U32_TERMINAL, 1, 0, 0)
    (_, action), = iter_nla(options[_tc.TCA_U32_ACT])
    act = dict(iter_nla(action))
    assert bytes(act[_tc.TCA_ACT_KIND]) == b"mirred\0"
    parms = dict(iter_nla(act[_tc.TCA_ACT_OPTIONS]))[_tc.TCA_MIRRED_PARMS]
    _, _, verdict, _, _, eaction, ifindex = struct.unpack("=IIiiiiI", parms)
    assert (verdict, eaction, ifindex) == (_tc.TC_ACT_STOLEN, _tc.TCA_EGRESS_REDIR, 7)


def test_ingress_qdisc_message() -> None:
    parsed = _tc.parse(whole(_tc.RTM_NEWQDISC, _tc.ingress_qdisc(4)))
    assert (parsed.ifindex, parsed.handle, parsed.parent, parsed.kind) == (4, 0xFFFF0000, 0xFFFFFFF1, "ingress")


def test_attributes_are_padded_and_iterated() -> None:
    blob = nla(1, b"abc") + nest(2, nla(3, b"\x01\x02\x03\x04"), flagged=True)
    assert len(blob) % 4 == 0
    items = list(iter_nla(blob))
    assert (items[0][0], bytes(items[0][1])) == (1, b"abc")
    assert items[1][0] == 2  # NLA_F_NESTED is masked off
    assert [(k, bytes(v)) for k, v in iter_nla(items[1][1])] == [(3, b"\x01\x02\x03\x04")]
    assert list(iter_nla(b"\x02\x00")) == []  # truncated header: nothing


def test_bridge_vlan_dump_part_is_parsed_with_pvid_and_untagged_flags() -> None:
    part = ifinfmsg()
    part["family"] = _msg.AF_BRIDGE
    part["index"] = 4
    part["attrs"] = [("IFLA_IFNAME", "veth1"), ("IFLA_AF_SPEC", {"attrs": [
        ("IFLA_BRIDGE_VLAN_INFO", {"flags": 0x2 | 0x4, "vid": 100}),
        ("IFLA_BRIDGE_VLAN_INFO", {"flags": 0, "vid": 200}),
    ]})]
    part.encode()
    index, vlans = _msg.parse_bridge_vlans(bytes(part.data))
    assert index == 4
    assert [(v.vid, v.pvid, v.untagged) for v in vlans] == [(100, True, True), (200, False, False)]


def test_noprefixroute_address_carries_the_32_bit_flag_only_in_ifa_flags() -> None:
    msg = ifaddrmsg(whole(20, _msg.addr_change(2, ip_interface("10.62.0.5/16"), nodad=True, noprefixroute=True)))
    msg.decode()
    assert msg["flags"] == 0x02  # the 8-bit header field cannot hold IFA_F_NOPREFIXROUTE (0x200)
    assert msg.get_attr("IFA_FLAGS") == 0x202
    assert msg["prefixlen"] == 16 and msg.get_attr("IFA_LOCAL") == "10.62.0.5"


def test_route_lookup_asks_for_the_fib_entry_of_one_address() -> None:
    for addr, family, width in (("10.62.0.5", socket.AF_INET, 32), ("fd00:62::5", socket.AF_INET6, 128)):
        msg = rtmsg(whole(26, _msg.route_lookup(ip_address(addr))))
        msg.decode()
        assert (msg["family"], msg["dst_len"], msg["flags"]) == (family, width, 0x2000)
        assert msg.get_attr("RTA_DST") == addr
