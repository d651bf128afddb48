"""Routed mode (``"mode": "routed"``): each attachment is a veth whose host end is a router port, with no
bridge, so there is no port limit (a Linux bridge takes 1,024 ports) and no broadcast domain (an ARP
broadcast reaches the host end of one veth, not every port of a crowded bridge).

The design is the reference ``ptp`` plugin's (containernetworking/plugins ``plugins/main/ptp/ptp.go``)
hardened with Calico's host-veth settings:

* **Gateway.** The result's gateway is the IPAM's (the subnet's first address unless ``ipam.gateway``
  says otherwise), as in bridge mode, so a guest configured by the kernel's ``ip=`` parameter
  (firecracker-go-sdk's vmconf) gets a gateway inside its netmask — the kernel refuses one outside it,
  which rules out Calico's 169.254.1.1 for VMs. The host end of every veth holds that gateway as a
  host address (``/32``, ``/128``, no DAD), so the host's ordinary ARP/NDP answers it, whatever the
  host's own routes are (Calico's proxy-ARP gateway needs the host to route 169.254.1.1 somewhere,
  i.e. a default route). The same address on many veths is fine: each is a local route of its own dev.
* **Host routes.** One ``/32`` (``/128``) route per address, ``dev <host veth> scope link``. Deleting the
  veth deletes its routes and gateway addresses with it: DEL needs no route bookkeeping.
* **Host veth sysctls** (IPv4 ones over rtnetlink, see ``host_side``). ``proxy_arp=1`` with
  ``neigh/<veth>/proxy_delay=0`` (a guest that believes the subnet is on-link ARPs for its peers: the host
  answers for any address it routes elsewhere, at once instead of after up to 0.8 s), ``rp_filter=1`` (strict:
  the only way back to a container address is its own veth, so a container cannot send with another's
  address), ``accept_ra=0``; forwarding on. IPv6 is off on the port unless the attachment has an IPv6 address
  (no per-port fe80::/64 and ff00::/8 routes: they made the host's IPv6 lookups and every veth delete grow
  with the ports); when it is on, the port's link-local address skips DAD (``accept_dad=0``, set before IPv6
  comes on), because the host solicits a container's address only from a link-local address that is not
  tentative: with DAD the first forwarded IPv6 packets to a new attachment were lost for 1-2 s.
* **Container side.** The addresses keep the IPAM's prefix (the result and ``ip addr`` agree, and the
  firewall's masquerade exemption covers the whole subnet) but are added with ``noprefixroute``; the
  routes are ``<subnet> via <gateway> onlink``, then the result's routes, also ``onlink`` (default via
  the gateway with ``isDefaultGateway``). The container never ARPs for a peer: all its traffic goes to
  the gateway, i.e. to the host, which routes it.
* **One interface per network and namespace.** With strict rp_filter a container's packets must leave
  by the veth of their source address. A second interface of the same network in one namespace gets
  no routes of its own (the first one's subnet and default routes are already there), so its replies
  leave by the first veth and the host drops them: give each namespace one attachment per routed network.

**Coexistence with a bridge network.** The two networks must use disjoint subnets (the shipped
conflists: 10.61.0.0/16 bridged, 10.62.0.0/16 routed). ADD refuses (code 7) an address that the host
already routes through something else: a connected subnet (a bridge network's ``10.61.0.0/16 dev
ignite0``), a host address, or another more specific unicast route; default routes and blackhole /
unreachable / prohibit routes do not count (``ip route add blackhole 10.62.0.0/16`` is even advisable:
traffic to an unassigned address of the subnet then stops at the host instead of following the default
route). The check is one route lookup per address, whatever the number of attachments.
"""

from __future__ import annotations

import ipaddress

from ..errors import InvalidConfig
from ..netlink import sysctl
from ..netlink.sysctl import SysctlMissing

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from ..netlink.ops import IPAddress, IPNetwork, LinkInfo, Route
    from ..result import IPConfig
    from .kernel import ContainerNet, HostNet

RTN_UNICAST, RTN_LOCAL = 1, 2
SYSCTLS_V4 = (("net/ipv4/conf/{}/proxy_arp", "1"), ("net/ipv4/neigh/{}/proxy_delay", "0"),
              ("net/ipv4/conf/{}/rp_filter", "1"))
SYSCTLS_V6 = (("net/ipv6/conf/{}/accept_ra", "0"),)


def host_prefix(addr: IPAddress) -> IPNetwork:
    return ipaddress.ip_network(f"{addr}/{addr.max_prefixlen}")


def gateway_of(ip: IPConfig) -> IPAddress:
    """The attachment's gateway for one address: the IPAM's, else the subnet's first address."""
    gw = ip.gateway if ip.gateway is not None else ip.address.network.network_address + 1
    if gw == ip.address.ip or gw not in ip.address.network:
        raise InvalidConfig(f"routed mode needs a gateway inside {ip.address.network} other than {ip.address.ip}",
                            f"gateway {gw}")
    return gw


def _write(key: str, value: str, *, missing_ok: bool = False) -> None:
    try:
        sysctl.write(key, value)
    except SysctlMissing:
        if not missing_ok:
            raise


def refuse_overlap(host: HostNet, ips: list[IPConfig]) -> None:
    """Code 7 when the host already routes an address of ips through something that is not a default,
    blackhole, unreachable or prohibit route (a bridge network's subnet, a host address, ...)."""
    for ip in ips:
        found = host.nl.route_to(ip.address.ip)
        if found is None or found.dst.prefixlen == 0 or found.type not in (RTN_UNICAST, RTN_LOCAL):
            continue
        dev = host.nl.link_by_index(found.index) if found.index else None
        where = f" dev {dev.name}" if dev is not None else ""
        what = "a host address" if found.type == RTN_LOCAL else f"routed by the host ({found.dst}{where})"
        raise InvalidConfig(f"routed mode: {ip.address.ip} is already {what}",
                            "a routed network's subnet must not overlap a bridge network's or any other "
                            "route of the host; give the routed network its own subnet")


def host_side(host: HostNet, veth: LinkInfo, ips: list[IPConfig]) -> None:
    """Make the host veth the attachments' router port: sysctls, gateway addresses, host routes. The veth
    is up already (a route through a down device is refused); everything here goes with the veth."""
    families = {ip.address.version for ip in ips}
    if 4 in families:  # SYSCTLS_V4 over rtnetlink: a /proc/sys write's path walk grows with the host's veths
        host.nl.set_ipv4_conf(veth.index, {"proxy_arp": 1, "rp_filter": 1})
        host.nl.set_proxy_delay(veth.index, 0)
    if 6 in families:  # IPv6 devconf cannot be set over rtnetlink (inet6_set_link_af): /proc
        for key, value in SYSCTLS_V6:
            _write(key.format(veth.name), value, missing_ok=True)
        _write(f"net/ipv6/conf/{veth.name}/accept_dad", "0", missing_ok=True)  # before IPv6 comes on: see own_port
        _write(f"net/ipv6/conf/{veth.name}/disable_ipv6", "0", missing_ok=True)
    for ip in ips:
        gw = gateway_of(ip)
        host.nl.add_addr(veth.index, ipaddress.ip_interface(f"{gw}/{gw.max_prefixlen}"), nodad=True)
        host.nl.add_route(host_prefix(ip.address.ip), None, veth.index)


def container_routes(ips: list[IPConfig]) -> list[tuple[IPNetwork, IPAddress]]:
    """The routes routed mode adds in the container before the result's: each subnet via its gateway,
    (dst, gw) pairs. Every route via a gateway is ``onlink``: the prefix is not on-link, the host veth is."""
    out: list[tuple[IPNetwork, IPAddress]] = []
    for ip in ips:
        route = (ip.address.network, gateway_of(ip))
        if route not in out:
            out.append(route)
    return out


def configure_container(cont: ContainerNet, index: int, ips: list[IPConfig]) -> None:
    for dst, gw in container_routes(ips):
        cont.nl.add_route(dst, gw, index, onlink=True)


# ---------------------------------------------------------------------------------------------- CHECK

def host_problems(host: HostNet, veth: LinkInfo, ips: list[IPConfig]) -> list[str]:
    """What CHECK finds missing on the host side: one route lookup per address, a few sysctl reads."""
    found: list[str] = []
    if veth.master is not None:
        found.append(f"host veth {veth.name} is enslaved to #{veth.master} (routed mode has no bridge)")
    if not veth.up:
        found.append(f"host veth {veth.name} is down")
    families = {ip.address.version for ip in ips}
    for key, value in SYSCTLS_V4 if 4 in families else ():
        path = key.format(veth.name)
        try:
            have = sysctl.read(path)
        except SysctlMissing:
            have = "missing"
        if have != value:
            found.append(f"{path.replace('/', '.')} is {have}, routed mode needs {value}")
    have_addrs = {a.address for a in host.nl.addrs(veth.index)}
    for ip in ips:
        gw = gateway_of(ip)
        if ipaddress.ip_interface(f"{gw}/{gw.max_prefixlen}") not in have_addrs:
            found.append(f"gateway address {gw} is missing on {veth.name}")
        route: Route | None = host.nl.route_to(ip.address.ip)
        if route is None or route.index != veth.index or route.dst != host_prefix(ip.address.ip):
            found.append(f"host route to {host_prefix(ip.address.ip)} dev {veth.name} is missing")
    return found


def container_problems(cont: ContainerNet, ifname: str, index: int, ips: list[IPConfig]) -> list[str]:
    routes = [r for fam in (2, 10) for r in cont.nl.routes(fam) if r.index == index]
    return [f"route to {dst}{f' via {gw}' if gw else ''} is missing on {ifname}"
            for dst, gw in container_routes(ips) if not any(r.dst == dst and r.gw == gw for r in routes)]
