"""The per-interface sysctl messages (IPv4 devconf over RTM_SETLINK, neighbour parms over RTM_SETNEIGHTBL),
decoded by pyroute2 as the oracle; their effect on a real kernel is tests/integration/test_devconf_netlink.py."""

from __future__ import annotations

import struct

import pytest
from pyroute2_oracle import ifinfmsg

from cni_ignite.netlink import _msg
from cni_ignite.netlink._nl import HDR_SIZE, iter_nla


def whole(msg_type: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", HDR_SIZE + len(body), msg_type, 0, 1, 0) + body


def test_devconf_indexes_are_the_kernels_ipv4_devconf_enum() -> None:
    # pyroute2 decodes the kernel's IFLA_INET_CONF array with one field per IPV4_DEVCONF_* value (its field 0
    # is the array's attribute header): a name's position there is its enum value, our attribute type.
    fields = ifinfmsg.af_spec_inet.inet.field_names
    assert {key: fields.index(key) for key in _msg.IPV4_DEVCONF} == _msg.IPV4_DEVCONF


def test_ipv4_conf_message_nests_af_spec_inet_conf_with_one_u32_per_key() -> None:
    body = _msg.set_ipv4_conf(7, {"proxy_arp": 1, "rp_filter": 1, "arp_notify": 0})
    msg = ifinfmsg(whole(19, body))
    msg.decode()
    assert (msg["index"], msg["flags"], msg["change"]) == (7, 0, 0)
    spec = msg.get_attr("IFLA_AF_SPEC")
    assert spec is not None and [name for name, _ in spec["attrs"]] == ["AF_INET"]
    # pyroute2 decodes only the dump layout inside AF_INET; the set layout is nested attributes: walk them
    (af_spec,) = [p for t, p in iter_nla(body, 16) if t == _msg.IFLA_AF_SPEC]
    ((family, inet),) = list(iter_nla(af_spec))
    ((kind, conf),) = list(iter_nla(inet))
    assert (family, kind) == (2, _msg.IFLA_INET_CONF)
    assert [(t, struct.unpack("=I", p)[0]) for t, p in iter_nla(conf)] == [(3, 1), (8, 1), (22, 0)]


def test_ipv4_conf_refuses_a_key_it_does_not_know() -> None:
    with pytest.raises(KeyError):
        _msg.set_ipv4_conf(7, {"forwarding": 1})  # its /proc handler does more than store the value


def test_proxy_delay_message_names_the_arp_table_and_the_links_parms() -> None:
    from pyroute2.netlink.rtnl.ndtmsg import ndtmsg

    msg = ndtmsg(whole(_msg.RTM_SETNEIGHTBL, _msg.set_neigh_parms(2, 9, proxy_delay_ms=0)))
    msg.decode()
    assert msg["family"] == 2
    assert msg.get_attr("NDTA_NAME") == "arp_cache"
    parms = msg.get_attr("NDTA_PARMS")
    assert (parms.get_attr("NDTPA_IFINDEX"), parms.get_attr("NDTPA_PROXY_DELAY")) == (9, 0)
    later = ndtmsg(whole(_msg.RTM_SETNEIGHTBL, _msg.set_neigh_parms(2, 9, proxy_delay_ms=800)))
    later.decode()
    assert later.get_attr("NDTA_PARMS").get_attr("NDTPA_PROXY_DELAY") == 800


def test_netconf_request_asks_for_the_namespaces_all_entry() -> None:
    # pyroute2 has no netconf message class: the layout by hand (netconfmsg is one byte, padded to four;
    # NETCONFA_IFINDEX is an s32, -1 = NETCONFA_IFINDEX_ALL), accepted by the kernel in the integration test
    assert _msg.netconf_request(2).hex() == "02000000" + "08000100" + "ffffffff"
    assert _msg.netconf_request(10, 7).hex() == "0a000000" + "08000100" + "07000000"


def test_netconf_reply_gives_the_forwarding_switch() -> None:
    from cni_ignite.netlink._nl import nla

    reply = whole(80, b"\x02\x00\x00\x00" + nla(1, struct.pack("=i", -1)) + nla(2, struct.pack("=i", 1)))
    assert _msg.parse_netconf_forwarding(reply) == 1
    assert _msg.parse_netconf_forwarding(whole(80, b"\x02\x00\x00\x00" + nla(1, struct.pack("=i", -1)))) is None
