"""Link, address and route messages, encoded and decoded with pyroute2's message classes only.

This is the sole importer of pyroute2. Its package ``__init__`` imports every subsystem (~400 ms), so
the ``pyroute2`` package is registered from its import spec without executing ``__init__`` and only
``pyroute2.netlink`` and ``pyroute2.netlink.rtnl.{ifinfmsg,ifaddrmsg,rtmsg}`` are imported. That also
works frozen: PyInstaller's importer gives the spec a search path. Consequence: in a process that loaded
this module, ``from pyroute2 import IPRoute`` does not work (nothing here needs it).

Builders return the message body (everything after the 16-byte nlmsghdr); ``_nl`` frames and sends it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import types
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from ..errors import PluginUnavailable
from .ops import Addr, BridgeAttrs, BridgePort, BridgeVlan, IPAddress, IPInterface, IPNetwork, LinkInfo, Route


def _register_pyroute2() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        raise PluginUnavailable("pyroute2 is not installed", "the netlink layer needs pyroute2==0.9.7")
    package = importlib.util.module_from_spec(spec)
    sys.modules["pyroute2"] = package
    # pyroute2.config (multiprocessing, pickle, platform: ~5 ms per plugin start) serves its sockets and
    # NDB; the message classes read only these settings from it. Nothing else in the plugin uses pyroute2.
    config = types.ModuleType("pyroute2.config")
    config.AF_BRIDGE = 7  # type: ignore[attr-defined]
    config.AF_NETLINK = 16  # type: ignore[attr-defined]
    config.data_plugins_pkgs = []  # type: ignore[attr-defined]
    config.data_plugins_path = []  # type: ignore[attr-defined]
    config.machine = os.uname().machine  # type: ignore[attr-defined]
    config.mock_netlink = False  # type: ignore[attr-defined]
    config.netns_path = ["/var/run/netns"]  # type: ignore[attr-defined]
    sys.modules["pyroute2.config"] = config
    package.config = config  # type: ignore[attr-defined]


_register_pyroute2()

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

AF_BRIDGE = 7
NLA_F_NESTED = 0x8000
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
RTNH_F_ONLINK = 0x4
RTN_UNICAST = 1


def _body(msg: Any) -> bytes:
    msg.encode()
    return bytes(msg.data[16:])


# --- links -----------------------------------------------------------------------------------------


def link_request(*, index: int = 0, name: str | None = None, family: int = 0, ext_mask: int = 0) -> bytes:
    """Body of an RTM_GETLINK (one link by index or name, or a dump when neither is given)."""
    msg = ifinfmsg()
    msg["family"] = family
    msg["index"] = index
    attrs: list[tuple[str, Any]] = [("IFLA_EXT_MASK", ext_mask or RTEXT_FILTER_SKIP_STATS)]
    if name is not None:
        attrs.append(("IFLA_IFNAME", name))
    msg["attrs"] = attrs
    return _body(msg)


def new_bridge(name: str, *, mtu: int, data: list[tuple[str, int]]) -> bytes:
    msg = ifinfmsg()
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
    info: list[tuple[str, Any]] = [("IFLA_INFO_KIND", "bridge")]
    if data:
        info.append(("IFLA_INFO_DATA", {"attrs": data}))
    attrs.append(("IFLA_LINKINFO", {"attrs": info}))
    msg["attrs"] = attrs
    return _body(msg)


def change_bridge(index: int, data: list[tuple[str, int]]) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge"), ("IFLA_INFO_DATA", {"attrs": data})]})
    ]
    return _body(msg)


def new_veth(
    name: str, peer: str, *, peer_netns_fd: int | None, mtu: int, mac: str | None, peer_mac: str | None
) -> bytes:
    peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer)]
    attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name)]
    if mtu:
        attrs.append(("IFLA_MTU", mtu))
        peer_attrs.append(("IFLA_MTU", mtu))
    if mac:
        attrs.append(("IFLA_ADDRESS", mac))
    if peer_mac:
        peer_attrs.append(("IFLA_ADDRESS", peer_mac))
    if peer_netns_fd is not None:
        peer_attrs.append(("IFLA_NET_NS_FD", peer_netns_fd))
    data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
    attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", data)]}))
    msg = ifinfmsg()
    msg["attrs"] = attrs
    return _body(msg)


def set_link(
    index: int, *, up: bool | None, master: int | None, mtu: int | None, mac: str | None,
    promisc: bool | None, name: str | None = None,
) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    flags = change = 0
    if up is not None:
        change |= IFF_UP
        flags |= IFF_UP if up else 0
    if promisc is not None:
        change |= IFF_PROMISC
        flags |= IFF_PROMISC if promisc else 0
    msg["flags"], msg["change"] = flags, change
    attrs: list[tuple[str, Any]] = []
    if name is not None:
        attrs.append(("IFLA_IFNAME", name))
    if mtu is not None:
        attrs.append(("IFLA_MTU", mtu))
    if mac is not None:
        attrs.append(("IFLA_ADDRESS", mac))
    if master is not None:
        attrs.append(("IFLA_MASTER", master))
    msg["attrs"] = attrs
    return _body(msg)


def del_link(index: int = 0, name: str | None = None) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    msg["attrs"] = [("IFLA_IFNAME", name)] if name is not None else []
    return _body(msg)


def set_brport(index: int, flags: list[tuple[str, int]]) -> bytes:
    """AF_BRIDGE RTM_SETLINK with a nested IFLA_PROTINFO (NLA_F_NESTED marks the new-style format)."""
    msg = ifinfmsg()
    msg["family"] = AF_BRIDGE
    msg["index"] = index
    msg["attrs"] = [("IFLA_PROTINFO", {"attrs": flags}, NLA_F_NESTED)]
    return _body(msg)


def bridge_vlan(index: int, vid: int, *, pvid: bool, untagged: bool, vid_end: int | None, bridge_self: bool) -> bytes:
    """AF_BRIDGE RTM_SETLINK/RTM_DELLINK body adding or removing one VLAN (or a range) on a port."""
    flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
    spec: list[tuple[str, Any]] = []
    if bridge_self:
        spec.append(("IFLA_BRIDGE_FLAGS", BRIDGE_FLAGS_SELF))
    if vid_end is None or vid_end == vid:
        spec.append(("IFLA_BRIDGE_VLAN_INFO", {"flags": flags, "vid": vid}))
    else:
        spec.append(("IFLA_BRIDGE_VLAN_INFO", {"flags": flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, "vid": vid}))
        spec.append(("IFLA_BRIDGE_VLAN_INFO", {"flags": flags | BRIDGE_VLAN_INFO_RANGE_END, "vid": vid_end}))
    msg = ifinfmsg()
    msg["family"] = AF_BRIDGE
    msg["index"] = index
    msg["attrs"] = [("IFLA_AF_SPEC", {"attrs": spec})]  # unflagged, as iproute2 and vishvananda send it
    return _body(msg)


def _decode_link(raw: bytes) -> Any:
    msg = ifinfmsg(raw)
    msg.decode()
    return msg


def parse_link(raw: bytes) -> LinkInfo:
    msg = _decode_link(raw)
    kind = msg.get(("linkinfo", "kind"))
    port = bridge = None
    if msg.get(("linkinfo", "slave_kind")) == "bridge":
        sd = msg.get(("linkinfo", "slave_data"))
        if sd is not None:
            port = BridgePort(
                hairpin=bool(sd.get("mode")), learning=bool(sd.get("learning")),
                isolated=bool(sd.get("isolated")), state=int(sd.get("state") or 0),
            )
    if kind == "bridge":
        bd = msg.get(("linkinfo", "data"))
        if bd is not None:
            bridge = BridgeAttrs(
                vlan_filtering=bool(bd.get("br_vlan_filtering")), stp=bool(bd.get("br_stp_state")),
                forward_delay=int(bd.get("br_forward_delay") or 0),
                ageing_time=int(bd.get("br_ageing_time") or 0),
                default_pvid=int(bd.get("br_vlan_default_pvid") or 0),
            )
    index = int(msg["index"])
    # The kernel omits IFLA_LINK when it equals the link's own index, which for a veth whose peer sits
    # in another netns under the same number means "peer index == own index".
    link = msg.get("link", index if kind == "veth" else None)
    netnsid = msg.get("link_netnsid")
    mac = msg.get("address")
    return LinkInfo(
        index=index, name=str(msg.get("ifname")), kind=kind, mac=str(mac) if mac else None,
        mtu=int(msg.get("mtu") or 0), master=msg.get("master") or None,
        up=bool(msg["flags"] & IFF_UP), oper_up=msg.get("operstate") == "UP",
        promisc=bool(msg["flags"] & IFF_PROMISC),
        peer_index=int(link) if link else None,
        netns_id=int(netnsid) if netnsid is not None else None, port=port, bridge=bridge,
    )


def parse_bridge_vlans(raw: bytes) -> tuple[int, list[BridgeVlan]]:
    """(ifindex, VLANs) from one part of an AF_BRIDGE link dump made with RTEXT_FILTER_BRVLAN."""
    msg = _decode_link(raw)
    spec = msg.get_attr("IFLA_AF_SPEC")
    out: list[BridgeVlan] = []
    if spec is not None:
        for info in spec.get_attrs("IFLA_BRIDGE_VLAN_INFO"):
            out.append(BridgeVlan(
                vid=int(info["vid"]), pvid=bool(info["flags"] & BRIDGE_VLAN_INFO_PVID),
                untagged=bool(info["flags"] & BRIDGE_VLAN_INFO_UNTAGGED),
            ))
    return int(msg["index"]), out


# --- addresses -------------------------------------------------------------------------------------


def addr_request(family: int, index: int = 0) -> bytes:
    msg = ifaddrmsg()
    msg["family"] = family
    msg["index"] = index
    return _body(msg)


def addr_change(index: int, iface: IPInterface, *, nodad: bool = False) -> bytes:
    family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
    msg = ifaddrmsg()
    msg["family"] = family
    msg["prefixlen"] = iface.network.prefixlen
    msg["index"] = index
    ip = str(iface.ip)
    attrs: list[tuple[str, Any]] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    if iface.version == 4 and iface.network.prefixlen < 31:
        attrs.append(("IFA_BROADCAST", str(iface.network.broadcast_address)))
    if nodad:
        msg["flags"] = IFA_F_NODAD
        attrs.append(("IFA_FLAGS", IFA_F_NODAD))
    msg["attrs"] = attrs
    return _body(msg)


def parse_addr(raw: bytes) -> Addr:
    msg = ifaddrmsg(raw)
    msg.decode()
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    return Addr(
        index=int(msg["index"]), address=ip_interface(f"{local}/{msg['prefixlen']}"), scope=int(msg["scope"]),
        tentative=bool(flags & IFA_F_TENTATIVE), dadfailed=bool(flags & IFA_F_DADFAILED),
        permanent=bool(flags & IFA_F_PERMANENT),
    )


# --- routes ----------------------------------------------------------------------------------------


def route_request(family: int, table: int) -> bytes:
    msg = rtmsg()
    msg["family"] = family
    msg["table"] = table if table < 256 else 0
    return _body(msg)


def route_change(
    dst: IPNetwork, gw: IPAddress | None, index: int | None, *, table: int, priority: int | None,
    scope: int, proto: int, mtu: int | None, src: IPAddress | None, onlink: bool, type_: int = RTN_UNICAST,
) -> bytes:
    msg = rtmsg()
    msg["family"] = socket.AF_INET if dst.version == 4 else socket.AF_INET6
    msg["dst_len"] = dst.prefixlen
    msg["table"] = table if table < 256 else 252  # RT_TABLE_COMPAT; RTA_TABLE carries the real id
    msg["proto"] = proto
    msg["scope"] = scope
    msg["type"] = type_
    msg["flags"] = RTNH_F_ONLINK if onlink else 0
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", table)]
    if dst.prefixlen:
        attrs.append(("RTA_DST", str(dst.network_address)))
    if gw is not None:
        attrs.append(("RTA_GATEWAY", str(gw)))
    if index is not None:
        attrs.append(("RTA_OIF", index))
    if priority is not None:
        attrs.append(("RTA_PRIORITY", priority))
    if src is not None:
        attrs.append(("RTA_PREFSRC", str(src)))
    if mtu:
        attrs.append(("RTA_METRICS", {"attrs": [("RTAX_MTU", mtu)]}))
    msg["attrs"] = attrs
    return _body(msg)


def parse_route(raw: bytes) -> Route:
    msg = rtmsg(raw)
    msg.decode()
    family = int(msg["family"])
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst = msg.get_attr("RTA_DST") or zero
    gw = msg.get_attr("RTA_GATEWAY")
    src = msg.get_attr("RTA_PREFSRC")
    metrics = msg.get_attr("RTA_METRICS")
    mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
    table = msg.get_attr("RTA_TABLE")
    return Route(
        dst=ip_network(f"{dst}/{msg['dst_len']}", strict=False), gw=ip_address(gw) if gw else None,
        index=msg.get_attr("RTA_OIF"), table=int(table if table is not None else msg["table"]),
        priority=msg.get_attr("RTA_PRIORITY"), scope=int(msg["scope"]), proto=int(msg["proto"]),
        type=int(msg["type"]), mtu=mtu, src=ip_address(src) if src else None,
    )
