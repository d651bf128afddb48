"""Value types and errors of the netlink layer, and the ``NetlinkOps`` protocol the plugins program against.

This module imports no netlink machinery (only ``ipaddress``), so a plugin can type against it and
tests can fake it. The real implementation is :class:`cni_ignite.netlink.rtnl.Rtnl`.

Errors::

    CniError
    ├── LinkExists            a create met a link of that name that cannot be reused
    ├── NetlinkError (_nl)    any other kernel refusal; carries ``errno``
    └── LinkNotUp             wait_oper_up timed out
    NotFound
    ├── LinkNotFound          a link to change or read is absent
    └── NetnsGone             a netns path does not exist (DEL treats it as success)
"""

from __future__ import annotations

import errno as _errno
import os
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

from ..errors import CniError, NotFound

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import NamedTuple as Record
    from typing import Protocol
else:
    from .. import Record

    Protocol = object  # NetlinkOps is a protocol for mypy only

IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address

RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255  # in a delete: match any scope
RTPROT_BOOT = 3
RTPROT_STATIC = 4
TAP_MAX_MTU = 65535 - 14  # the tun driver's max_mtu for a tap: MAX_MTU - ETH_HLEN
TAP_MAX_ID = 2**32 - 2  # TUNSETOWNER/TUNSETGROUP take a uid_t/gid_t; (uid_t)-1 is "invalid"


class LinkExists(CniError):
    """A link with that name exists and cannot be reused (or the kernel said EEXIST)."""


class LinkNotFound(NotFound):
    """The link named (or indexed) does not exist in this namespace."""


class NetnsGone(NotFound):
    """The network namespace path does not exist (any more)."""


class NetlinkError(CniError):
    """The kernel refused a request; ``errno`` says why, ``msg`` names the request."""

    def __init__(self, err: int, msg: str, kernel_text: str = "") -> None:
        reason = os.strerror(err) + (f" ({kernel_text})" if kernel_text else "")
        super().__init__(msg, f"{_errno.errorcode.get(err, str(err))}: {reason}")
        self.errno = err
        self.kernel_text = kernel_text


class LinkNotUp(CniError):
    """A link did not become operationally up in time."""


class BridgePort(Record):
    """Bridge-port flags of a link enslaved to a bridge (IFLA_INFO_SLAVE_DATA)."""

    hairpin: bool
    learning: bool
    isolated: bool
    state: int  # BR_STATE_*: 0 disabled, 1 listening, 2 learning, 3 forwarding, 4 blocking


class BridgeAttrs(Record):
    """Attributes of a bridge device (IFLA_INFO_DATA of kind ``bridge``)."""

    vlan_filtering: bool
    stp: bool
    forward_delay: int  # centiseconds, as the kernel reports it
    ageing_time: int  # centiseconds
    default_pvid: int


class LinkInfo(Record):
    index: int  # type: ignore[assignment]
    name: str
    kind: str | None  # "bridge", "veth", "tun", ... ; None for devices without rtnl link ops (lo)
    mac: str | None  # lower-case "aa:bb:..."; None when the device has no L2 address
    mtu: int
    master: int | None
    up: bool  # IFF_UP (administratively up)
    oper_up: bool  # IFLA_OPERSTATE == IF_OPER_UP
    promisc: bool  # promiscuity requested by a user (IFF_PROMISC as reported)
    peer_index: int | None  # IFLA_LINK: a veth's peer ifindex (in the peer's netns), when it differs
    netns_id: int | None  # IFLA_LINK_NETNSID: the peer's netns as an id local to this netns
    port: BridgePort | None = None  # set when the link is a bridge port
    bridge: BridgeAttrs | None = None  # set when the link is a bridge
    alias: str = ""  # IFLA_IFALIAS ("" when unset); the plugins mark what they made with it


class Addr(Record):
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    address: IPInterface
    scope: int
    tentative: bool
    dadfailed: bool
    permanent: bool


class Route(Record):
    dst: IPNetwork
    gw: IPAddress | None
    index: int | None  # type: ignore[assignment]
    table: int
    priority: int | None
    scope: int
    proto: int
    type: int  # RTN_UNICAST=1, RTN_LOCAL=2, ...
    mtu: int | None = None
    src: IPAddress | None = None


class BridgeVlan(Record):
    vid: int
    pvid: bool
    untagged: bool


class NetlinkOps(Protocol):
    """What the plugins need from the kernel; :class:`cni_ignite.netlink.rtnl.Rtnl` implements it."""

    def link(self, name: str) -> LinkInfo | None: ...
    def link_by_index(self, index: int) -> LinkInfo | None: ...
    def links(self) -> list[LinkInfo]: ...
    def require(self, name_or_index: str | int) -> LinkInfo: ...
    def create_bridge(
        self, name: str, *, mtu: int = 0, vlan_filtering: bool = False, forward_delay: int | None = None
    ) -> LinkInfo: ...
    def create_veth(
        self, name: str, peer_name: str, *, peer_netns_fd: int | None, mtu: int = 0,
        mac: str | None = None, mac_of_peer: str | None = None,
    ) -> LinkInfo: ...
    def set_link(
        self, index: int, *, up: bool | None = None, master: int | None = None, nomaster: bool = False,
        mtu: int | None = None, mac: str | None = None, promisc: bool | None = None, alias: str | None = None,
    ) -> None: ...
    def set_brport(
        self, index: int, *, hairpin: bool | None = None, learning: bool | None = None,
        isolated: bool | None = None,
    ) -> None: ...
    def set_bridge(
        self, index: int, *, vlan_filtering: bool | None = None, stp: bool | None = None,
        forward_delay: int | None = None, ageing_time: int | None = None,
    ) -> None: ...
    def bridge_vlans(self, index: int) -> list[BridgeVlan]: ...
    def bridge_vlan_add(
        self, index: int, vid: int, *, pvid: bool = False, untagged: bool = False,
        vid_end: int | None = None, bridge_self: bool = False,
    ) -> None: ...
    def bridge_vlan_del(
        self, index: int, vid: int, *, vid_end: int | None = None, bridge_self: bool = False
    ) -> bool: ...
    def delete_link(self, name_or_index: str | int) -> bool: ...
    def addrs(self, index: int | None = None, family: int | None = None) -> list[Addr]: ...
    def add_addr(
        self, index: int, iface: IPInterface, *, nodad: bool = False, noprefixroute: bool = False
    ) -> bool: ...
    def del_addr(self, index: int, iface: IPInterface) -> bool: ...
    def routes(self, family: int, *, table: int = RT_TABLE_MAIN) -> list[Route]: ...
    def route_to(self, addr: IPAddress) -> Route | None: ...
    def add_route(
        self, dst: IPNetwork, gw: IPAddress | None = None, index: int | None = None, *,
        table: int = RT_TABLE_MAIN, priority: int | None = None, scope: int | None = None,
        mtu: int | None = None, src: IPAddress | None = None, onlink: bool = False,
    ) -> bool: ...
    def del_route(
        self, dst: IPNetwork, gw: IPAddress | None = None, index: int | None = None, *,
        table: int = RT_TABLE_MAIN, priority: int | None = None,
    ) -> bool: ...
    def wait_oper_up(self, index: int, timeout: float = 2.6) -> LinkInfo: ...
    def wait_dad(self, index: int, timeout: float = 5.0) -> list[Addr]: ...
    def create_tap(
        self, name: str, *, uid: int | None = None, gid: int | None = None, vnet_hdr: bool = True,
        multi_queue: bool = False, mtu: int = 0, up: bool = True, alias: str | None = None,
        exclusive: bool = True, staging: str | None = None,
    ) -> LinkInfo: ...
    def add_tc_redirect(self, a_index: int, b_index: int) -> None: ...
    def has_tc_redirect(self, a_index: int, b_index: int) -> bool: ...
    def del_ingress_qdisc(self, index: int) -> bool: ...
