"""The bridge plugin's kernel work, on top of the netlink layer: the host side (bridge, host veth,
gateway addresses, forwarding) and the container side (interface addresses, routes, sysctls)."""

from __future__ import annotations

import errno
import os

from ..errors import CniError, InvalidConfig, InvalidNetns, PluginUnavailable, UnknownContainer
from ..netlink import sysctl
from ..netlink.netns import entered, open_netns
from ..netlink.ops import NetlinkError, NetnsGone
from ..netlink.rtnl import Rtnl
from ..netlink.sysctl import SysctlMissing

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from ..netlink.ops import LinkInfo
    from ..result import IPConfig, IPInterface, Route
    from .config import BridgeConfig

AF_INET, AF_INET6 = 2, 10


def _set(key: str, value: str, *, missing_ok: bool = False) -> None:
    try:
        sysctl.write(key, value)
    except SysctlMissing:
        if not missing_ok:
            raise


class HostNet:
    """The namespace the plugin runs in (the runtime's host)."""

    def __init__(self) -> None:
        self.nl = Rtnl()

    def close(self) -> None:
        self.nl.close()

    def link_info(self, name: str) -> LinkInfo:
        link = self.nl.link(name)
        if link is None:
            raise CniError(f"link {name} disappeared")
        return link

    def ensure_bridge(self, cfg: BridgeConfig) -> LinkInfo:
        br = self.nl.link(cfg.bridge)
        if br is None:
            vlan_filtering = bool(cfg.vlan or cfg.vlan_trunk)
            try:
                br = self.nl.create_bridge(cfg.bridge, mtu=cfg.mtu, vlan_filtering=vlan_filtering)
            except NetlinkError as exc:
                if vlan_filtering and exc.errno == errno.EOPNOTSUPP:
                    raise CniError("vlan/vlanTrunk need bridge VLAN filtering, which this kernel lacks",
                                   "CONFIG_BRIDGE_VLAN_FILTERING is not set") from exc
                raise
            _set(f"net/ipv6/conf/{cfg.bridge}/accept_ra", "0", missing_ok=True)
        elif br.kind != "bridge":
            raise InvalidConfig(f"{cfg.bridge} already exists but is not a bridge", f"it is a {br.kind}")
        # Pin the MAC (set it to itself) so the bridge does not adopt its lowest port's MAC as ports churn.
        self.nl.set_link(br.index, mac=br.mac, up=True, promisc=True if cfg.promisc_mode else None)
        return self.link_info(cfg.bridge)

    def create_veth(self, name: str, peer: str, cont: ContainerNet, *, mtu: int, peer_mac: str) -> LinkInfo:
        return self.nl.create_veth(name, peer, peer_netns_fd=cont.fd, mtu=mtu, mac_of_peer=peer_mac or None)

    def attach_port(self, veth: LinkInfo, bridge: LinkInfo, cfg: BridgeConfig, *, tag: str) -> None:
        """Enslave the host veth and mark it as the attachment's (its alias is ``tag``) in one message.

        A bridge port is layer 2 only (the bridge holds the gateway addresses), so IPv6 is off on it before
        it comes up: no link-local address, no fe80::/64 and ff00::/8 routes per port. Those per-port routes
        made every IPv6 packet the host receives walk a route node with one entry per port
        (``__find_rr_leaf``) and every veth delete walk them all (``fib6_ifdown``): ADD and DEL grew with the
        ports (``benchmarks/DENSITY.md``). Frames of any protocol are still bridged through the port."""
        _set(f"net/ipv6/conf/{veth.name}/disable_ipv6", "1", missing_ok=True)
        self.nl.set_link(veth.index, master=bridge.index, up=True, alias=tag)
        if cfg.hairpin_mode or cfg.port_isolation:
            self.nl.set_brport(veth.index, hairpin=cfg.hairpin_mode or None, isolated=cfg.port_isolation or None)
        if cfg.vlan or cfg.vlan_trunk:
            if not cfg.preserve_default_vlan:
                self.nl.bridge_vlan_del(veth.index, 1)
            if cfg.vlan:
                self.nl.bridge_vlan_add(veth.index, cfg.vlan, pvid=True, untagged=True)
            for r in cfg.vlan_trunk:
                self.nl.bridge_vlan_add(veth.index, r.lo, vid_end=r.hi if r.hi != r.lo else None)
            if not cfg.vlan:  # a trunk without an access VLAN keeps native VLAN 1 (reference behaviour)
                self.nl.bridge_vlan_add(veth.index, 1, pvid=True, untagged=True)

    def own_port(self, veth: LinkInfo, *, tag: str) -> None:
        """Routed mode: mark the host veth as the attachment's and bring it up (its routes need it up).

        IPv6 is off on it until ``routed.host_side`` turns it on for an attachment with an IPv6 address, so an
        IPv4-only port adds no IPv6 routes to the host (see ``attach_port``); ``host_side`` turns DAD off
        before it turns IPv6 on. IPv6 devconf cannot be set over rtnetlink (the kernel's
        ``inet6_set_link_af`` takes only the token and addr_gen_mode), so this one stays a /proc write."""
        _set(f"net/ipv6/conf/{veth.name}/disable_ipv6", "1", missing_ok=True)
        self.nl.set_link(veth.index, up=True, alias=tag)

    def set_gateway_addrs(self, bridge: LinkInfo, gateways: list[IPInterface], *, force: bool) -> None:
        """The reference's ensureAddr: one IPv4 address per bridge; IPv6 addresses must not overlap."""
        have = self.nl.addrs(bridge.index)
        for gw in gateways:
            clash = [a.address for a in have if a.address.version == gw.version and a.address != gw
                     and (gw.version == 4 or a.address.network.overlaps(gw.network))
                     and not a.address.ip.is_link_local]
            if any(a.address == gw for a in have):
                continue
            if clash and not force:
                raise CniError(f"{bridge.name} already has an IP address different from {gw}",
                               ", ".join(str(c) for c in clash))
            for old in clash:
                self.nl.del_addr(bridge.index, old)
            self.nl.add_addr(bridge.index, gw, nodad=True)

    def enable_forwarding(self, families: set[int]) -> None:
        """Forwarding on for each family; read over netlink (RTM_GETNETCONF, no /proc path walk on every ADD),
        written through /proc only when it is off (no rtnetlink message sets it)."""
        if 4 in families and not self.nl.forwarding(4):
            _set("net/ipv4/ip_forward", "1")
        if 6 in families and not self.nl.forwarding(6):
            _set("net/ipv6/conf/all/forwarding", "1")

    def hairpin_for_mapped_ports(self, veth: LinkInfo) -> None:
        """With br_netfilter active (bridge-nf-call-iptables=1, built into many kernels), a container's
        connection to its own mapped port is DNAT'ed while being bridged and must leave through the port
        it came in on: that needs the port's hairpin flag, whatever promiscMode says."""
        try:
            active = sysctl.read("net/bridge/bridge-nf-call-iptables") == "1"
        except SysctlMissing:
            active = False
        if active:
            self.nl.set_brport(veth.index, hairpin=True)

    def route_localnet(self, iface: str) -> None:
        """127.0.0.1 host ports: the bridge's, or in routed mode the host veth's (DNAT'ed out through it).
        Over rtnetlink, not /proc: a /proc/sys write's path walk grows with the host's interfaces."""
        self.nl.set_ipv4_conf(self.link_info(iface).index, {"route_localnet": 1})

    def delete_link(self, name: str) -> bool:
        return self.nl.delete_link(name)

    def delete_own_link(self, name: str, tag: str) -> bool:
        """Delete link name only when its alias is tag (it is the attachment's); False otherwise."""
        link = self.nl.link(name)
        if link is None or link.alias != tag:
            return False
        return self.nl.delete_link(link.index)

    def wait_oper_up(self, index: int) -> None:
        self.nl.wait_oper_up(index)


class ContainerNet:
    """The container's namespace (CNI_NETNS), reached through one fd and one netlink socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = open_netns(path)
        try:
            self.nl = Rtnl(self.fd)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        self.nl.close()
        os.close(self.fd)

    def link(self, name: str) -> LinkInfo | None:
        return self.nl.link(name)

    def configure(self, ifname: str, *, ips: list[IPConfig], routes: list[Route], cfg: BridgeConfig) -> LinkInfo:
        link = self.nl.link(ifname)
        if link is None:
            raise CniError(f"{ifname} vanished from {self.path}")
        has_v6 = any(ip.address.version == 6 for ip in ips)
        # arp_notify over rtnetlink on the namespace's own socket: no setns, no /proc/sys path walk (its cost
        # grew with the host's network namespaces: ~2.5 ms at 4,000, benchmarks/DENSITY.md).
        try:
            self.nl.set_ipv4_conf(link.index, {"arp_notify": 1})
        except NetlinkError as exc:
            if exc.errno != errno.EAFNOSUPPORT:  # no IPv4 on the link: nothing to notify
                raise
        if has_v6:  # IPv6 devconf cannot be set over rtnetlink (inet6_set_link_af): /proc inside the netns
            with entered(self.fd):
                for dev in ("lo", ifname):
                    _set(f"net/ipv6/conf/{dev}/disable_ipv6", "0", missing_ok=True)
                _set(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1", missing_ok=True)
                _set(f"net/ipv6/conf/{ifname}/accept_dad", "1" if cfg.enable_dad else "0", missing_ok=True)
                if cfg.enable_dad:
                    _set(f"net/ipv6/conf/{ifname}/enhanced_dad", "1", missing_ok=True)
        for ip in ips:  # routed: the prefix is not on-link, everything goes through the gateway
            self.nl.add_addr(link.index, ip.address, nodad=not cfg.enable_dad, noprefixroute=cfg.routed)
        if not cfg.disable_container_interface:
            self.nl.set_link(link.index, up=True)
        if cfg.routed:
            from .routed import configure_container

            configure_container(self, link.index, ips)
        gateways = {ip.gateway.version: ip.gateway for ip in reversed(ips) if ip.gateway is not None}
        for r in routes:
            gw = r.gw if r.gw is not None else gateways.get(r.dst.version)
            self.nl.add_route(r.dst, gw, link.index, table=r.table or 254, priority=r.priority or None,
                              scope=r.scope, mtu=r.mtu or None, onlink=cfg.routed and gw is not None)
        if has_v6 and cfg.enable_dad:
            self.nl.wait_dad(link.index)
        return self.nl.link(ifname) or link

    def addresses_of(self, ifname: str) -> list[IPInterface]:
        link = self.nl.link(ifname)
        if link is None:
            return []
        return [a.address for a in self.nl.addrs(link.index) if not a.address.ip.is_link_local]

    def delete_link(self, name: str) -> bool:
        return self.nl.delete_link(name)


def open_container(path: str) -> ContainerNet:
    try:
        return ContainerNet(path)
    except NetnsGone as exc:
        raise UnknownContainer(f"container network namespace {path} does not exist", str(exc)) from exc


def open_container_for_del(path: str) -> ContainerNet | None:
    """DEL's view of CNI_NETNS: None when it is empty, gone (NetnsGone), or not a network namespace at all
    (InvalidNetns: a leftover file): the container side is then unreachable and DEL cleans what the host side
    holds. Any other failure to open or enter it (IOFailure, a netlink error) is raised: the container side
    may well be there, so the DEL must fail (5) and be repeated, not answer ok leaving its links."""
    if not path:
        return None
    try:
        return ContainerNet(path)
    except (NetnsGone, InvalidNetns):
        return None


def bridge_usable(name: str) -> None:
    """STATUS: the bridge either exists as a bridge or can be created (nothing else holds the name)."""
    if os.path.exists(f"/sys/class/net/{name}") and not os.path.isdir(f"/sys/class/net/{name}/bridge"):
        raise PluginUnavailable(f"{name} exists but is not a bridge")
