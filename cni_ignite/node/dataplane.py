"""The kernel side of the agent, through pyroute2's IPRoute: a flannel-compatible VXLAN device with one route,
one permanent neighbour and one FDB entry per peer, or (host-gw) one route per peer via its underlay address.

Ownership: every route and neighbour entry we add carries protocol RTPROT_IGNITE (61: rtm_protocol, NDA_PROTOCOL),
and a full reconcile deletes only entries with that protocol. VXLAN FDB entries carry no protocol: we delete one
only on our own device and only for a MAC that one of our neighbour entries maps (or that we installed in this
run). Nothing here runs when etcd is unreachable: the data plane is only changed from what etcd said.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pyroute2.netlink.exceptions import NetlinkError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["RTPROT_IGNITE", "DataPlane", "HostGwPlane", "Peer", "Underlay", "VxlanPlane", "resolve_underlay"]

log = logging.getLogger("cni_ignite.node")

RTPROT_IGNITE = 61  # unassigned in iproute2's rt_protos; marks the routes this agent owns
RTNH_F_ONLINK = 4
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_SELF = 0x02
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14, as flannel
RT_TABLE_MAIN = 254


@dataclass(frozen=True)
class Peer:
    subnet: ipaddress.IPv4Network
    public_ip: ipaddress.IPv4Address
    vtep_mac: str | None = None

    @property
    def vtep_ip(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address


@dataclass(frozen=True)
class Underlay:
    ifname: str
    index: int
    address: ipaddress.IPv4Address
    mtu: int


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def resolve_underlay(ipr: IPRoute, iface: str | None, public_ip: str | None) -> Underlay:
    """The host's underlay: --iface, else the interface holding --public-ip, else the default route's (flannel)."""
    addrs = [(a["index"], ipaddress.IPv4Address(_attr(a, "IFA_ADDRESS"))) for a in ipr.get_addr(family=socket.AF_INET)]
    if iface:
        found = ipr.link_lookup(ifname=iface)
        if not found:
            raise ValueError(f"underlay interface {iface!r} does not exist")
        index = found[0]
    elif public_ip:
        match = [i for i, a in addrs if a == ipaddress.IPv4Address(public_ip)]
        if not match:
            raise ValueError(f"no interface holds {public_ip}; give --iface")
        index = match[0]
    else:
        routes = ipr.get_default_routes(family=socket.AF_INET, table=RT_TABLE_MAIN)
        defaults = [r for r in routes if _attr(r, "RTA_OIF")]
        if not defaults:
            raise ValueError("no default route to pick the underlay interface from; give --iface or --public-ip")
        index = _attr(defaults[0], "RTA_OIF")
    own = [a for i, a in addrs if i == index]
    if public_ip and ipaddress.IPv4Address(public_ip) in own:
        address = ipaddress.IPv4Address(public_ip)
    elif own:
        address = own[0]
    else:
        raise ValueError(f"underlay interface #{index} has no IPv4 address")
    link = ipr.get_links(index)[0]
    return Underlay(_attr(link, "IFLA_IFNAME"), index, address, int(_attr(link, "IFLA_MTU")))


class DataPlane(Protocol):
    backend: str

    @property
    def mtu(self) -> int: ...

    def prepare(self) -> str | None:
        """Create what the lease needs (the VXLAN device); returns the VTEP MAC for the lease, if any."""

    def configure(self, own: ipaddress.IPv4Network) -> None:
        """Give the host its subnet (the VXLAN device's .0/32 address)."""

    def apply(self, peer: Peer) -> None: ...

    def remove(self, subnet: ipaddress.IPv4Network) -> None: ...

    def reconcile(self, peers: dict[ipaddress.IPv4Network, Peer]) -> None:
        """Make the kernel hold exactly these peers (among what we own)."""


def _quiet(what: str, exc: NetlinkError) -> None:
    log.warning("%s: %s", what, exc)


class _Routes:
    """Our routes in the main table: dst -> (gateway, oif), only those marked RTPROT_IGNITE."""

    def __init__(self, ipr: IPRoute, network: ipaddress.IPv4Network) -> None:
        self.ipr = ipr
        self.network = network

    def ours(self) -> dict[ipaddress.IPv4Network, tuple[str | None, int]]:
        found: dict[ipaddress.IPv4Network, tuple[str | None, int]] = {}
        for r in self.ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN, proto=RTPROT_IGNITE):
            if r["proto"] != RTPROT_IGNITE or _attr(r, "RTA_DST") is None:
                continue
            dst = ipaddress.IPv4Network(f"{_attr(r, 'RTA_DST')}/{r['dst_len']}")
            found[dst] = (_attr(r, "RTA_GATEWAY"), _attr(r, "RTA_OIF"))
        return found

    def put(self, dst: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address, oif: int, onlink: bool) -> None:
        try:
            self.ipr.route("replace", dst=str(dst), gateway=str(gateway), oif=oif, proto=RTPROT_IGNITE,
                           table=RT_TABLE_MAIN, flags=RTNH_F_ONLINK if onlink else 0)
        except NetlinkError as exc:
            _quiet(f"route {dst} via {gateway}", exc)

    def drop(self, dst: ipaddress.IPv4Network) -> None:
        try:
            self.ipr.route("del", dst=str(dst), proto=RTPROT_IGNITE, table=RT_TABLE_MAIN)
        except NetlinkError as exc:
            if exc.code != errno.ESRCH:
                _quiet(f"delete route {dst}", exc)


class HostGwPlane:
    """One route per peer: <peer subnet> via <peer underlay address> dev <underlay>."""

    backend = "host-gw"

    def __init__(self, ipr: IPRoute, network: ipaddress.IPv4Network, underlay: Underlay) -> None:
        self.underlay = underlay
        self.routes = _Routes(ipr, network)
        self.peers: dict[ipaddress.IPv4Network, Peer] = {}

    @property
    def mtu(self) -> int:
        return self.underlay.mtu

    def prepare(self) -> str | None:
        return None

    def configure(self, own: ipaddress.IPv4Network) -> None:
        pass

    def apply(self, peer: Peer) -> None:
        self.routes.put(peer.subnet, peer.public_ip, self.underlay.index, onlink=False)
        self.peers[peer.subnet] = peer

    def remove(self, subnet: ipaddress.IPv4Network) -> None:
        self.routes.drop(subnet)
        self.peers.pop(subnet, None)

    def reconcile(self, peers: dict[ipaddress.IPv4Network, Peer]) -> None:
        have = self.routes.ours()
        for dst, (gw, oif) in have.items():
            want = peers.get(dst)
            if want is None or gw != str(want.public_ip) or oif != self.underlay.index:
                self.routes.drop(dst)
        for peer in peers.values():
            if have.get(peer.subnet) != (str(peer.public_ip), self.underlay.index):
                self.apply(peer)
        self.peers = dict(peers)


class VxlanPlane:
    """flannel.<VNI>: VXLAN over the underlay, no learning; per peer a route via its VTEP address (onlink),
    a permanent neighbour VTEP address -> VtepMAC and an FDB entry VtepMAC -> underlay address. With flannel's
    Backend.DirectRouting, a peer whose underlay address is directly connected gets a plain route via that address
    instead (no encapsulation), as flanneld does for it: both directions then take the same path."""

    backend = "vxlan"

    def __init__(self, ipr: IPRoute, network: ipaddress.IPv4Network, underlay: Underlay, vni: int, port: int,
                 direct_routing: bool = False) -> None:
        self.ipr = ipr
        self.network = network
        self.underlay = underlay
        self.vni = vni
        self.port = port
        self.direct_routing = direct_routing
        self.ifname = f"flannel.{vni}"
        self.index = 0
        self.routes = _Routes(ipr, network)
        self.peers: dict[ipaddress.IPv4Network, Peer] = {}
        self.direct: dict[ipaddress.IPv4Network, tuple[str, int]] = {}  # peers routed directly: (gateway, oif)

    @property
    def mtu(self) -> int:
        return self.underlay.mtu - VXLAN_OVERHEAD

    def _compatible(self, link: Any) -> bool:
        info = _attr(link, "IFLA_LINKINFO")
        if info is None or _attr(info, "IFLA_INFO_KIND") != "vxlan":
            return False
        data = _attr(info, "IFLA_INFO_DATA")
        return (data is not None and _attr(data, "IFLA_VXLAN_ID") == self.vni
                and _attr(data, "IFLA_VXLAN_PORT") == self.port
                and _attr(data, "IFLA_VXLAN_LOCAL") == str(self.underlay.address)
                and _attr(data, "IFLA_VXLAN_LINK") == self.underlay.index)

    def prepare(self) -> str:
        found = self.ipr.link_lookup(ifname=self.ifname)
        if found and not self._compatible(self.ipr.get_links(found[0])[0]):
            log.info("%s exists with other VXLAN parameters: recreating it", self.ifname)
            self.ipr.link("del", index=found[0])
            found = []
        if not found:
            self.ipr.link("add", ifname=self.ifname, kind="vxlan", vxlan_id=self.vni, vxlan_port=self.port,
                          vxlan_local=str(self.underlay.address), vxlan_link=self.underlay.index,
                          vxlan_learning=0, mtu=self.mtu)
            found = self.ipr.link_lookup(ifname=self.ifname)
        self.index = found[0]
        self.ipr.link("set", index=self.index, mtu=self.mtu)
        link = self.ipr.get_links(self.index)[0]
        return str(_attr(link, "IFLA_ADDRESS")).lower()

    def configure(self, own: ipaddress.IPv4Network) -> None:
        want = own.network_address
        for a in self.ipr.get_addr(family=socket.AF_INET, index=self.index):
            addr = ipaddress.IPv4Address(_attr(a, "IFA_ADDRESS"))
            if addr != want or a["prefixlen"] != 32:
                self.ipr.addr("del", index=self.index, address=str(addr), prefixlen=a["prefixlen"])
        if not self.ipr.get_addr(family=socket.AF_INET, index=self.index):
            self.ipr.addr("add", index=self.index, address=str(want), prefixlen=32)
        self.ipr.link("set", index=self.index, state="up")

    def _direct(self, peer: Peer) -> int | None:
        """flannel's DirectRouting: the peer's underlay address is directly connected (its route has no gateway):
        the interface to route its subnet through, without VXLAN; None otherwise."""
        if not self.direct_routing:
            return None
        try:
            found = self.ipr.route("get", dst=str(peer.public_ip))
        except NetlinkError as exc:
            _quiet(f"route get {peer.public_ip}", exc)
            return None
        if len(found) != 1 or _attr(found[0], "RTA_GATEWAY") is not None:
            return None
        oif = _attr(found[0], "RTA_OIF")
        return int(oif) if oif else None

    def apply(self, peer: Peer) -> None:
        if peer.vtep_mac is None:
            return
        old = self.peers.get(peer.subnet)
        if old is not None and old.vtep_mac != peer.vtep_mac:
            self._drop_fdb(old.vtep_mac, old.public_ip)  # the peer's device changed: forget the old MAC
        oif = self._direct(peer)
        if oif is not None:  # as flannel: a plain route via its underlay address; no neighbour, no FDB entry
            if old is not None:
                self._drop_fdb(old.vtep_mac, old.public_ip)
                if old.vtep_mac:
                    self._drop_neigh(old.vtep_ip, old.vtep_mac)
            self.routes.put(peer.subnet, peer.public_ip, oif, onlink=False)
            self.peers[peer.subnet] = peer
            self.direct[peer.subnet] = (str(peer.public_ip), oif)
            return
        self.direct.pop(peer.subnet, None)
        try:
            self.ipr.neigh("replace", ifindex=self.index, dst=str(peer.vtep_ip), lladdr=peer.vtep_mac,
                           state=NUD_PERMANENT, NDA_PROTOCOL=RTPROT_IGNITE)
            self.ipr.fdb("replace", ifindex=self.index, lladdr=peer.vtep_mac, dst=str(peer.public_ip),
                         state=NUD_PERMANENT | NUD_NOARP, flags=NTF_SELF)
        except NetlinkError as exc:
            _quiet(f"neighbour/fdb for {peer.subnet}", exc)
        self.routes.put(peer.subnet, peer.vtep_ip, self.index, onlink=True)
        self.peers[peer.subnet] = peer

    def _drop_fdb(self, mac: str | None, dst: ipaddress.IPv4Address) -> None:
        if mac is None:
            return
        try:
            self.ipr.fdb("del", ifindex=self.index, lladdr=mac, dst=str(dst))
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ESRCH):
                _quiet(f"delete fdb {mac}", exc)

    def _drop_neigh(self, vtep: ipaddress.IPv4Address, mac: str) -> None:
        try:
            self.ipr.neigh("del", ifindex=self.index, dst=str(vtep), lladdr=mac)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ESRCH):
                _quiet(f"delete neighbour {vtep}", exc)

    def remove(self, subnet: ipaddress.IPv4Network) -> None:
        self.routes.drop(subnet)
        peer = self.peers.pop(subnet, None)
        if peer is None or self.direct.pop(subnet, None) is not None:
            return
        # FDB before the neighbour: the neighbour is what tells a later reconcile that the FDB entry is ours.
        self._drop_fdb(peer.vtep_mac, peer.public_ip)
        if peer.vtep_mac:
            self._drop_neigh(peer.vtep_ip, peer.vtep_mac)

    def _neighbours(self) -> dict[ipaddress.IPv4Address, str]:
        found: dict[ipaddress.IPv4Address, str] = {}
        for n in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=self.index):
            dst, mac = _attr(n, "NDA_DST"), _attr(n, "NDA_LLADDR")
            if n["ifindex"] == self.index and _attr(n, "NDA_PROTOCOL") == RTPROT_IGNITE and dst and mac:
                addr = ipaddress.IPv4Address(dst)
                if addr in self.network:
                    found[addr] = str(mac).lower()
        return found

    def _fdb(self) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for n in self.ipr.fdb("dump", ifindex=self.index):
            dst, mac = _attr(n, "NDA_DST"), _attr(n, "NDA_LLADDR")
            if n["ifindex"] == self.index and dst and mac and mac != "00:00:00:00:00:00":
                found.add((str(mac).lower(), str(dst)))
        return found

    def reconcile(self, peers: dict[ipaddress.IPv4Network, Peer]) -> None:
        wanted = {p.subnet: p for p in peers.values() if p.vtep_mac}
        direct = {s: oif for s, p in wanted.items() if (oif := self._direct(p)) is not None}
        for dst, (gw, oif) in self.routes.ours().items():
            want = wanted.get(dst)
            route = None if want is None else ((str(want.public_ip), direct[dst]) if dst in direct
                                               else (str(want.vtep_ip), self.index))
            if route != (gw, oif):
                self.routes.drop(dst)
        encapsulated = [p for s, p in wanted.items() if s not in direct]
        vteps = {p.vtep_ip: p.vtep_mac for p in encapsulated}
        neighbours = self._neighbours()
        owned_macs = set(neighbours.values()) | {str(p.vtep_mac) for p in self.peers.values()}
        fdb_want = {(str(p.vtep_mac), str(p.public_ip)) for p in encapsulated}
        for lladdr, remote in self._fdb() - fdb_want:
            if lladdr in owned_macs:
                self._drop_fdb(lladdr, ipaddress.IPv4Address(remote))
        for addr, lladdr in neighbours.items():
            if vteps.get(addr) != lladdr:
                self._drop_neigh(addr, lladdr)
        self.peers, self.direct = {}, {}
        for peer in wanted.values():
            self.apply(peer)
