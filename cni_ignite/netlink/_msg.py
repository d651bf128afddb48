"""Link, address and route messages, encoded and decoded with ``struct`` over rtnetlink's fixed layouts.

pyroute2's message classes did this first; their import (pyroute2.netlink with logging, traceback,
threading, and ~15 ifinfmsg plugins) cost ~15 ms of every plugin start, ~10 % of the whole-network ADD
budget (benchmarks/RESULTS.md), for the dozen attributes we use. The tests keep pyroute2 as the oracle:
every message built here is decoded by pyroute2's classes, and every reply parsed here was encoded by them.

Builders return the message body (everything after the 16-byte nlmsghdr); ``_nl`` frames and sends it.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its IntEnums and selectors cost ~3 ms per call
import struct
from ipaddress import ip_address, ip_interface, ip_network

from ._nl import iter_nla, nest, nla
from .ops import Addr, BridgeAttrs, BridgePort, BridgeVlan, IPAddress, IPInterface, IPNetwork, LinkInfo, Route

AF_BRIDGE = 7
IFF_UP = 0x1
IFF_PROMISC = 0x100
IF_OPER_UP = 6
RTEXT_FILTER_BRVLAN = 0x2
RTEXT_FILTER_SKIP_STATS = 0x8
BRIDGE_FLAGS_SELF = 0x2
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80
IFA_F_NOPREFIXROUTE = 0x200
RTM_F_FIB_MATCH = 0x2000
RTNH_F_ONLINK = 0x4
RTN_UNICAST = 1

IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_PROTINFO, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_IFALIAS, IFLA_AF_SPEC = 12, 16, 18, 20, 26
IFLA_NET_NS_FD, IFLA_EXT_MASK, IFLA_LINK_NETNSID = 28, 29, 37
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRIDGE_FLAGS, IFLA_BRIDGE_VLAN_INFO = 0, 2
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_METRICS, RTA_TABLE = 1, 4, 5, 6, 7, 8, 15
RTAX_MTU = 2

# Bridge and bridge-port attributes we set: (type, struct format) by the names rtnl.py uses.
BRIDGE_ATTRS = {"IFLA_BR_FORWARD_DELAY": (1, "=I"), "IFLA_BR_AGEING_TIME": (4, "=I"),
                "IFLA_BR_STP_STATE": (5, "=I"), "IFLA_BR_VLAN_FILTERING": (7, "=B")}
BRPORT_ATTRS = {"IFLA_BRPORT_MODE": (4, "=B"), "IFLA_BRPORT_LEARNING": (8, "=B"), "IFLA_BRPORT_ISOLATED": (33, "=B")}
IFLA_BR_FORWARD_DELAY, IFLA_BR_AGEING_TIME, IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING = 1, 4, 5, 7
IFLA_BR_VLAN_DEFAULT_PVID = 39
IFLA_BRPORT_STATE, IFLA_BRPORT_MODE, IFLA_BRPORT_LEARNING, IFLA_BRPORT_ISOLATED = 1, 4, 8, 33


def _u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def _str(kind: int, value: str) -> bytes:
    return nla(kind, value.encode() + b"\0")


def _mac(kind: int, value: str) -> bytes:
    return nla(kind, bytes.fromhex(value.replace(":", "")))


def _ifinfo(*, family: int = 0, index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return IFINFO.pack(family, 0, index, flags, change)


def _named(table: dict[str, tuple[int, str]], items: list[tuple[str, int]]) -> bytes:
    return b"".join(nla(table[name][0], struct.pack(table[name][1], value)) for name, value in items)


# --- links -----------------------------------------------------------------------------------------


def link_request(*, index: int = 0, name: str | None = None, family: int = 0, ext_mask: int = 0) -> bytes:
    """Body of an RTM_GETLINK (one link by index or name, or a dump when neither is given)."""
    out = _ifinfo(family=family, index=index) + _u32(IFLA_EXT_MASK, ext_mask or RTEXT_FILTER_SKIP_STATS)
    return out + (_str(IFLA_IFNAME, name) if name is not None else b"")


def _linkinfo(kind: str, data: bytes = b"") -> bytes:
    return nest(IFLA_LINKINFO, _str(IFLA_INFO_KIND, kind), nla(IFLA_INFO_DATA, data) if data else b"")


def new_bridge(name: str, *, mtu: int, data: list[tuple[str, int]]) -> bytes:
    out = _ifinfo() + _str(IFLA_IFNAME, name) + (_u32(IFLA_MTU, mtu) if mtu else b"")
    return out + _linkinfo("bridge", _named(BRIDGE_ATTRS, data))


def change_bridge(index: int, data: list[tuple[str, int]]) -> bytes:
    return _ifinfo(index=index) + _linkinfo("bridge", _named(BRIDGE_ATTRS, data))


def new_veth(
    name: str, peer: str, *, peer_netns_fd: int | None, mtu: int, mac: str | None, peer_mac: str | None
) -> bytes:
    peer_attrs = _str(IFLA_IFNAME, peer) + (_u32(IFLA_MTU, mtu) if mtu else b"")
    peer_attrs += (_mac(IFLA_ADDRESS, peer_mac) if peer_mac else b"")
    peer_attrs += (_u32(IFLA_NET_NS_FD, peer_netns_fd) if peer_netns_fd is not None else b"")
    attrs = _str(IFLA_IFNAME, name) + (_u32(IFLA_MTU, mtu) if mtu else b"") + (_mac(IFLA_ADDRESS, mac) if mac else b"")
    return _ifinfo() + attrs + _linkinfo("veth", nla(VETH_INFO_PEER, _ifinfo() + peer_attrs))


def set_link(
    index: int, *, up: bool | None, master: int | None, mtu: int | None, mac: str | None,
    promisc: bool | None, name: str | None = None, alias: str | None = None,
) -> bytes:
    flags = change = 0
    if up is not None:
        change |= IFF_UP
        flags |= IFF_UP if up else 0
    if promisc is not None:
        change |= IFF_PROMISC
        flags |= IFF_PROMISC if promisc else 0
    out = _ifinfo(index=index, flags=flags, change=change)
    out += _str(IFLA_IFNAME, name) if name is not None else b""
    out += _u32(IFLA_MTU, mtu) if mtu is not None else b""
    out += _mac(IFLA_ADDRESS, mac) if mac is not None else b""
    out += _str(IFLA_IFALIAS, alias) if alias is not None else b""
    return out + (_u32(IFLA_MASTER, master) if master is not None else b"")


def del_link(index: int = 0, name: str | None = None) -> bytes:
    return _ifinfo(index=index) + (_str(IFLA_IFNAME, name) if name is not None else b"")


def set_brport(index: int, flags: list[tuple[str, int]]) -> bytes:
    """AF_BRIDGE RTM_SETLINK with a nested IFLA_PROTINFO (NLA_F_NESTED marks the new-style format)."""
    return _ifinfo(family=AF_BRIDGE, index=index) + nest(IFLA_PROTINFO, _named(BRPORT_ATTRS, flags), flagged=True)


def bridge_vlan(index: int, vid: int, *, pvid: bool, untagged: bool, vid_end: int | None, bridge_self: bool) -> bytes:
    """AF_BRIDGE RTM_SETLINK/RTM_DELLINK body adding or removing one VLAN (or a range) on a port."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    spec = nla(IFLA_BRIDGE_FLAGS, struct.pack("=H", BRIDGE_FLAGS_SELF)) if bridge_self else b""
    if vid_end is None or vid_end == vid:
        spec += nla(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags, vid))
    else:
        spec += nla(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, vid))
        spec += nla(IFLA_BRIDGE_VLAN_INFO, struct.pack("=HH", flags | BRIDGE_VLAN_INFO_RANGE_END, vid_end))
    return _ifinfo(family=AF_BRIDGE, index=index) + nest(IFLA_AF_SPEC, spec)  # unflagged, as iproute2 sends it


def _int(payload: memoryview) -> int:
    return int.from_bytes(payload, "little", signed=False) if len(payload) in (1, 2, 4, 8) else 0


def _text(payload: memoryview) -> str:
    return bytes(payload).split(b"\0", 1)[0].decode(errors="replace")


def parse_link(raw: bytes) -> LinkInfo:
    _family, _type, index, flags, _change = IFINFO.unpack_from(raw, 16)
    attrs = dict(iter_nla(raw, 16 + IFINFO.size))
    kind = slave_kind = None
    data = slave = None
    if IFLA_LINKINFO in attrs:
        info = dict(iter_nla(attrs[IFLA_LINKINFO]))
        kind = _text(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
        slave_kind = _text(info[IFLA_INFO_SLAVE_KIND]) if IFLA_INFO_SLAVE_KIND in info else None
        data = dict(iter_nla(info[IFLA_INFO_DATA])) if IFLA_INFO_DATA in info else None
        slave = dict(iter_nla(info[IFLA_INFO_SLAVE_DATA])) if IFLA_INFO_SLAVE_DATA in info else None
    port = bridge = None
    if slave_kind == "bridge" and slave is not None:
        port = BridgePort(hairpin=bool(_int(slave.get(IFLA_BRPORT_MODE, memoryview(b"")))),
                          learning=bool(_int(slave.get(IFLA_BRPORT_LEARNING, memoryview(b"")))),
                          isolated=bool(_int(slave.get(IFLA_BRPORT_ISOLATED, memoryview(b"")))),
                          state=_int(slave.get(IFLA_BRPORT_STATE, memoryview(b""))))
    if kind == "bridge" and data is not None:
        empty = memoryview(b"")
        bridge = BridgeAttrs(vlan_filtering=bool(_int(data.get(IFLA_BR_VLAN_FILTERING, empty))),
                             stp=bool(_int(data.get(IFLA_BR_STP_STATE, empty))),
                             forward_delay=_int(data.get(IFLA_BR_FORWARD_DELAY, empty)),
                             ageing_time=_int(data.get(IFLA_BR_AGEING_TIME, empty)),
                             default_pvid=_int(data.get(IFLA_BR_VLAN_DEFAULT_PVID, empty)))
    # The kernel omits IFLA_LINK when it equals the link's own index, which for a veth whose peer sits
    # in another netns under the same number means "peer index == own index".
    link = _int(attrs[IFLA_LINK]) if IFLA_LINK in attrs else (index if kind == "veth" else None)
    netnsid = struct.unpack("=i", attrs[IFLA_LINK_NETNSID])[0] if IFLA_LINK_NETNSID in attrs else None
    mac = bytes(attrs[IFLA_ADDRESS]) if IFLA_ADDRESS in attrs else b""
    master = _int(attrs[IFLA_MASTER]) if IFLA_MASTER in attrs else 0
    return LinkInfo(
        index=index, name=_text(attrs.get(IFLA_IFNAME, memoryview(b""))), kind=kind,
        mac=":".join(f"{b:02x}" for b in mac) if mac else None,
        mtu=_int(attrs.get(IFLA_MTU, memoryview(b""))), master=master or None,
        up=bool(flags & IFF_UP),
        oper_up=IFLA_OPERSTATE in attrs and _int(attrs[IFLA_OPERSTATE]) == IF_OPER_UP,
        promisc=bool(flags & IFF_PROMISC),
        peer_index=link or None, netns_id=netnsid, port=port, bridge=bridge,
        alias=_text(attrs[IFLA_IFALIAS]) if IFLA_IFALIAS in attrs else "",
    )


def parse_bridge_vlans(raw: bytes) -> tuple[int, list[BridgeVlan]]:
    """(ifindex, VLANs) from one part of an AF_BRIDGE link dump made with RTEXT_FILTER_BRVLAN."""
    _family, _type, index, _flags, _change = IFINFO.unpack_from(raw, 16)
    out: list[BridgeVlan] = []
    for kind, payload in iter_nla(raw, 16 + IFINFO.size):
        if kind != IFLA_AF_SPEC:
            continue
        for sub, info in iter_nla(payload):
            if sub == IFLA_BRIDGE_VLAN_INFO:
                flags, vid = struct.unpack_from("=HH", info)
                out.append(BridgeVlan(vid=vid, pvid=bool(flags & BRIDGE_VLAN_INFO_PVID),
                                      untagged=bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)))
    return index, out


# --- addresses -------------------------------------------------------------------------------------


def addr_request(family: int, index: int = 0) -> bytes:
    return IFADDR.pack(family, 0, 0, 0, index)


def addr_change(index: int, iface: IPInterface, *, nodad: bool = False, noprefixroute: bool = False) -> bytes:
    """RTM_NEWADDR/RTM_DELADDR body; ``noprefixroute`` keeps the kernel from adding the on-link route of
    the prefix (IFA_F_NOPREFIXROUTE, a 32-bit flag: only in IFA_FLAGS)."""
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    packed = iface.ip.packed
    flags = (IFA_F_NODAD if nodad else 0) | (IFA_F_NOPREFIXROUTE if noprefixroute else 0)
    out = IFADDR.pack(family, iface.network.prefixlen, flags & 0xFF, 0, index)
    out += nla(IFA_LOCAL, packed) + nla(IFA_ADDRESS, packed)
    if iface.version == 4 and iface.network.prefixlen < 31:
        out += nla(IFA_BROADCAST, iface.network.broadcast_address.packed)
    return out + (_u32(IFA_FLAGS, flags) if flags else b"")


def parse_addr(raw: bytes) -> Addr:
    _family, prefixlen, flags, scope, index = IFADDR.unpack_from(raw, 16)
    attrs = dict(iter_nla(raw, 16 + IFADDR.size))
    if IFA_FLAGS in attrs:
        flags = _int(attrs[IFA_FLAGS])
    local = attrs.get(IFA_LOCAL) or attrs[IFA_ADDRESS]
    return Addr(
        index=index, address=ip_interface((bytes(local), prefixlen)), scope=scope,
        tentative=bool(flags & IFA_F_TENTATIVE), dadfailed=bool(flags & IFA_F_DADFAILED),
        permanent=bool(flags & IFA_F_PERMANENT),
    )


# --- routes ----------------------------------------------------------------------------------------


def route_request(family: int, table: int) -> bytes:
    return RTMSG.pack(family, 0, 0, 0, table if table < 256 else 0, 0, 0, 0, 0)


def route_lookup(addr: IPAddress) -> bytes:
    """RTM_GETROUTE body asking which FIB entry routes ``addr`` (RTM_F_FIB_MATCH: the entry itself, with
    its prefix, table and type, rather than the cached result)."""
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    width = 32 if addr.version == 4 else 128
    return RTMSG.pack(family, width, 0, 0, 0, 0, 0, 0, RTM_F_FIB_MATCH) + nla(RTA_DST, addr.packed)


def route_change(
    dst: IPNetwork, gw: IPAddress | None, index: int | None, *, table: int, priority: int | None,
    scope: int, proto: int, mtu: int | None, src: IPAddress | None, onlink: bool, type_: int = RTN_UNICAST,
) -> bytes:
    family = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    compat = table if table < 256 else 252  # RT_TABLE_COMPAT; RTA_TABLE carries the real id
    out = RTMSG.pack(family, dst.prefixlen, 0, 0, compat, proto, scope, type_, RTNH_F_ONLINK if onlink else 0)
    out += _u32(RTA_TABLE, table)
    out += nla(RTA_DST, dst.network_address.packed) if dst.prefixlen else b""
    out += nla(RTA_GATEWAY, gw.packed) if gw is not None else b""
    out += _u32(RTA_OIF, index) if index is not None else b""
    out += _u32(RTA_PRIORITY, priority) if priority is not None else b""
    out += nla(RTA_PREFSRC, src.packed) if src is not None else b""
    return out + (nest(RTA_METRICS, _u32(RTAX_MTU, mtu)) if mtu else b"")


def parse_route(raw: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, type_, _flags = RTMSG.unpack_from(raw, 16)
    attrs = dict(iter_nla(raw, 16 + RTMSG.size))
    width = 4 if family == socket.AF_INET else 16
    dst = bytes(attrs[RTA_DST]) if RTA_DST in attrs else bytes(width)
    mtu = None
    if RTA_METRICS in attrs:
        metrics = dict(iter_nla(attrs[RTA_METRICS]))
        mtu = _int(metrics[RTAX_MTU]) if RTAX_MTU in metrics else None
    return Route(
        dst=ip_network((dst, dst_len), strict=False),
        gw=ip_address(bytes(attrs[RTA_GATEWAY])) if RTA_GATEWAY in attrs else None,
        index=_int(attrs[RTA_OIF]) if RTA_OIF in attrs else None,
        table=_int(attrs[RTA_TABLE]) if RTA_TABLE in attrs else table,
        priority=_int(attrs[RTA_PRIORITY]) if RTA_PRIORITY in attrs else None,
        scope=scope, proto=proto, type=type_, mtu=mtu,
        src=ip_address(bytes(attrs[RTA_PREFSRC])) if RTA_PREFSRC in attrs else None,
    )


# --- per-interface sysctls (devconf, neighbour parms) over rtnetlink --------------------------------
# /proc/sys/net/... writes cost a path walk whose price grows with the network namespaces and interfaces
# on the host (~2.5 ms per write at 4,000 namespaces, benchmarks/DENSITY.md); these messages set the same
# per-interface values in one request on the socket of the link's own namespace, whatever their number.

# include/uapi/linux/ip.h IPV4_DEVCONF_*: the attribute type inside IFLA_INET_CONF is the enum value
# (the devconf array index + 1). Only keys whose /proc handler has no side effect we rely on (not
# forwarding: its handler also changes LRO and notifies).
IPV4_DEVCONF = {"proxy_arp": 3, "rp_filter": 8, "arp_notify": 22, "route_localnet": 26}
AF_INET_ = 2
IFLA_INET_CONF = 1
RTM_SETNEIGHTBL = 67
NDTMSG = struct.Struct("=BxH")  # ndtm_family, pad1, pad2
NDTA_NAME, NDTA_PARMS = 1, 6
NDTPA_IFINDEX, NDTPA_PROXY_DELAY = 1, 13


def set_ipv4_conf(index: int, values: dict[str, int]) -> bytes:
    """RTM_SETLINK body setting net.ipv4.conf.<link>.<key> for each key (IFLA_AF_SPEC → AF_INET →
    IFLA_INET_CONF → {IPV4_DEVCONF_<KEY>: u32}); the kernel's ``inet_set_link_af``. Only per-link keys
    of IPV4_DEVCONF; a KeyError for any other name."""
    conf = b"".join(_u32(IPV4_DEVCONF[key], value) for key, value in values.items())
    return _ifinfo(index=index) + nest(IFLA_AF_SPEC, nest(AF_INET_, nla(IFLA_INET_CONF, conf)))


def set_neigh_parms(family: int, index: int, *, proxy_delay_ms: int) -> bytes:
    """RTM_SETNEIGHTBL body setting one link's neighbour parameter (net.ipv4.neigh.<link>.proxy_delay for
    family AF_INET, table ``arp_cache``): NDTA_PARMS with NDTPA_IFINDEX selects that link's parms."""
    name = "arp_cache" if family == AF_INET_ else "ndisc_cache"
    parms = _u32(NDTPA_IFINDEX, index) + nla(NDTPA_PROXY_DELAY, struct.pack("=Q", proxy_delay_ms))
    return NDTMSG.pack(family, 0) + _str(NDTA_NAME, name) + nest(NDTA_PARMS, parms)


# --- netconf (read a namespace's forwarding switch without /proc) -----------------------------------

RTM_GETNETCONF = 82
NETCONFA_IFINDEX, NETCONFA_FORWARDING = 1, 2
NETCONFA_IFINDEX_ALL = -1


def netconf_request(family: int, ifindex: int = NETCONFA_IFINDEX_ALL) -> bytes:
    """RTM_GETNETCONF body for one device's (or, with -1, the namespace's "all") netconf of family; the
    netconfmsg header is one byte, padded to four."""
    return struct.pack("=Bxxx", family) + nla(NETCONFA_IFINDEX, struct.pack("=i", ifindex))


def parse_netconf_forwarding(raw: bytes) -> int | None:
    """NETCONFA_FORWARDING of an RTM_NEWNETCONF reply (None when absent)."""
    for kind, payload in iter_nla(raw, 16 + 4):
        if kind == NETCONFA_FORWARDING:
            return int.from_bytes(payload[:4], "little", signed=True)
    return None
