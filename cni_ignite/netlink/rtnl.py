"""``Rtnl``: one NETLINK_ROUTE socket bound to one network namespace, with typed operations.

Open it for the current netns (``Rtnl()``), for a netns path (``Rtnl("/var/run/netns/x")``, which raises
NetnsGone when the path is missing) or for an open netns fd (``Rtnl(fd)``). The socket is created inside
that namespace and the thread returns to its own at once; the netns fd is kept (a dup) so that tap
creation and ``entered()`` (for sysctls) run in the same namespace. Use it as a context manager.

Errno mapping: EEXIST on create → reuse or LinkExists; ENODEV on change → LinkNotFound; "already gone"
on delete → False; anything else → NetlinkError (a CniError carrying ``errno`` and the kernel's text).
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its IntEnums and selectors cost ~3 ms per call
import errno
import os
import time

from . import _msg
from ._nl import NLM_F_CREATE, NLM_F_EXCL, NetlinkSocket, open_route_socket
from .netns import call_in, entered, open_netns
from .ops import (
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTPROT_BOOT,
    Addr,
    BridgeVlan,
    IPAddress,
    IPInterface,
    IPNetwork,
    LinkExists,
    LinkInfo,
    LinkNotFound,
    LinkNotUp,
    NetlinkError,
    Route,
)

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from types import TracebackType
    from typing import Any

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
_GONE = (errno.ENODEV, errno.ENOENT)
_POLL_STEPS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


class Rtnl:
    def __init__(self, netns: str | int | None = None) -> None:
        if isinstance(netns, str):
            self.netns_fd: int | None = open_netns(netns)
        elif isinstance(netns, int):
            self.netns_fd = os.dup(netns)
        else:
            self.netns_fd = None
        try:
            self.nl = NetlinkSocket(call_in(self.netns_fd, open_route_socket))
        except BaseException:
            if self.netns_fd is not None:
                os.close(self.netns_fd)
            raise

    def close(self) -> None:
        self.nl.close()
        if self.netns_fd is not None:
            os.close(self.netns_fd)
            self.netns_fd = None

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def entered(self) -> AbstractContextManager[None]:
        """Run a block inside this socket's netns (for /proc/sys writes); a no-op for the current netns."""
        if self.netns_fd is None:
            from contextlib import nullcontext

            return nullcontext()
        return entered(self.netns_fd)

    # --- links -------------------------------------------------------------------------------------

    def _get_link(self, what: str, **kw: Any) -> LinkInfo | None:
        try:
            replies = self.nl.request(RTM_GETLINK, _msg.link_request(**kw), what=what)
        except NetlinkError as exc:
            if exc.errno in _GONE:
                return None
            raise
        return _msg.parse_link(replies[0]) if replies else None

    def link(self, name: str) -> LinkInfo | None:
        return self._get_link(f"get link {name}", name=name)

    def link_by_index(self, index: int) -> LinkInfo | None:
        return self._get_link(f"get link #{index}", index=index)

    def require(self, name_or_index: str | int) -> LinkInfo:
        found = self.link(name_or_index) if isinstance(name_or_index, str) else self.link_by_index(name_or_index)
        if found is None:
            raise LinkNotFound(f"link {name_or_index} not found")
        return found

    def links(self) -> list[LinkInfo]:
        return [_msg.parse_link(m) for m in self.nl.dump(RTM_GETLINK, _msg.link_request(), what="dump links")]

    def _create(self, body: bytes, what: str) -> None:
        self.nl.request(RTM_NEWLINK, body, flags=NLM_F_CREATE | NLM_F_EXCL, what=what)

    def create_bridge(
        self, name: str, *, mtu: int = 0, vlan_filtering: bool = False, forward_delay: int | None = None
    ) -> LinkInfo:
        """Create bridge name (STP off), or return the existing one; LinkExists if name is not a bridge."""
        data = [("IFLA_BR_STP_STATE", 0)]
        if vlan_filtering:
            data.append(("IFLA_BR_VLAN_FILTERING", 1))
        if forward_delay is not None:
            data.append(("IFLA_BR_FORWARD_DELAY", forward_delay))
        try:
            self._create(_msg.new_bridge(name, mtu=mtu, data=data), f"create bridge {name}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise
        found = self.link(name)
        if found is None:
            raise LinkNotFound(f"bridge {name} vanished after creation")
        if found.kind != "bridge":
            raise LinkExists(f"{name} already exists but is not a bridge", f"kind {found.kind}")
        return found

    def create_veth(
        self, name: str, peer_name: str, *, peer_netns_fd: int | None, mtu: int = 0,
        mac: str | None = None, mac_of_peer: str | None = None,
    ) -> LinkInfo:
        """Create veth name here with its peer created directly in peer_netns_fd as peer_name.

        Returns this end; its ``peer_index`` is the peer's ifindex in the peer's netns. EEXIST (either
        name taken in its namespace) raises LinkExists so the caller can pick another name.
        """
        body = _msg.new_veth(name, peer_name, peer_netns_fd=peer_netns_fd, mtu=mtu, mac=mac, peer_mac=mac_of_peer)
        try:
            self._create(body, f"create veth {name} (peer {peer_name})")
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                raise LinkExists(f"cannot create veth {name}/{peer_name}: a name is taken", exc.details) from exc
            raise
        return self.require(name)

    def set_link(
        self, index: int, *, up: bool | None = None, master: int | None = None, nomaster: bool = False,
        mtu: int | None = None, mac: str | None = None, promisc: bool | None = None, name: str | None = None,
        alias: str | None = None,
    ) -> None:
        """Change a link; ``alias`` sets IFLA_IFALIAS ("" clears it)."""
        body = _msg.set_link(
            index, up=up, master=0 if nomaster else master, mtu=mtu, mac=mac, promisc=promisc, name=name, alias=alias
        )
        self._change(RTM_NEWLINK, body, index, f"set link #{index}")

    def set_ipv4_conf(self, index: int, values: dict[str, int]) -> None:
        """Set ``net.ipv4.conf.<link>.<key>`` (arp_notify, proxy_arp, rp_filter, route_localnet)
        in one RTM_SETLINK, without /proc: a /proc/sys write walks a path whose cost grows with the number
        of namespaces and interfaces (benchmarks/DENSITY.md); this costs the same at any density. Raises
        NetlinkError with EAFNOSUPPORT when the link has no IPv4 device state."""
        if values:
            self._change(RTM_SETLINK, _msg.set_ipv4_conf(index, values), index, f"set ipv4 conf of #{index}")

    def set_proxy_delay(self, index: int, ms: int) -> None:
        """``net.ipv4.neigh.<link>.proxy_delay`` (in ms here; /proc shows USER_HZ ticks) over RTM_SETNEIGHTBL."""
        body = _msg.set_neigh_parms(socket.AF_INET, index, proxy_delay_ms=ms)
        self._change(_msg.RTM_SETNEIGHTBL, body, index, f"set arp proxy_delay of #{index}")

    def forwarding(self, version: int) -> bool | None:
        """Whether the namespace forwards IPv4 (net.ipv4.ip_forward) or IPv6 (net.ipv6.conf.all.forwarding),
        read over RTM_GETNETCONF instead of /proc; None when the kernel does not say (no IPv6)."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        try:
            replies = self.nl.request(_msg.RTM_GETNETCONF, _msg.netconf_request(family),
                                      what=f"get IPv{version} netconf")
        except NetlinkError as exc:
            if exc.errno in (errno.EAFNOSUPPORT, errno.EOPNOTSUPP, errno.ENODEV, errno.EINVAL):
                return None
            raise
        value = _msg.parse_netconf_forwarding(replies[0]) if replies else None
        return None if value is None else bool(value)

    def _change(self, msg_type: int, body: bytes, index: int, what: str) -> None:
        try:
            self.nl.request(msg_type, body, what=what)
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                raise LinkNotFound(f"link #{index} not found ({what})") from exc
            raise

    def set_brport(
        self, index: int, *, hairpin: bool | None = None, learning: bool | None = None,
        isolated: bool | None = None,
    ) -> None:
        flags = [
            (attr, int(value))
            for attr, value in (("IFLA_BRPORT_MODE", hairpin), ("IFLA_BRPORT_LEARNING", learning),
                                ("IFLA_BRPORT_ISOLATED", isolated))
            if value is not None
        ]
        if flags:
            self._change(RTM_SETLINK, _msg.set_brport(index, flags), index, f"set bridge port #{index}")

    def set_bridge(
        self, index: int, *, vlan_filtering: bool | None = None, stp: bool | None = None,
        forward_delay: int | None = None, ageing_time: int | None = None,
    ) -> None:
        """Change bridge attributes (forward_delay and ageing_time in centiseconds)."""
        data = [
            (attr, int(value))
            for attr, value in (("IFLA_BR_VLAN_FILTERING", vlan_filtering), ("IFLA_BR_STP_STATE", stp),
                                ("IFLA_BR_FORWARD_DELAY", forward_delay), ("IFLA_BR_AGEING_TIME", ageing_time))
            if value is not None
        ]
        if data:
            self._change(RTM_NEWLINK, _msg.change_bridge(index, data), index, f"set bridge #{index}")

    def bridge_vlans(self, index: int) -> list[BridgeVlan]:
        """VLANs on a bridge port (or on the bridge itself), from an AF_BRIDGE dump."""
        body = _msg.link_request(family=_msg.AF_BRIDGE, ext_mask=_msg.RTEXT_FILTER_BRVLAN)
        for part in self.nl.dump(RTM_GETLINK, body, what="dump bridge vlans"):
            got, vlans = _msg.parse_bridge_vlans(part)
            if got == index:
                return vlans
        return []

    def bridge_vlan_add(
        self, index: int, vid: int, *, pvid: bool = False, untagged: bool = False,
        vid_end: int | None = None, bridge_self: bool = False,
    ) -> None:
        """Add VLAN vid (..vid_end) on port index (bridge_self: on the bridge device itself)."""
        body = _msg.bridge_vlan(index, vid, pvid=pvid, untagged=untagged, vid_end=vid_end, bridge_self=bridge_self)
        self._change(RTM_SETLINK, body, index, f"add vlan {vid} on #{index}")

    def bridge_vlan_del(
        self, index: int, vid: int, *, vid_end: int | None = None, bridge_self: bool = False
    ) -> bool:
        body = _msg.bridge_vlan(index, vid, pvid=False, untagged=False, vid_end=vid_end, bridge_self=bridge_self)
        try:
            self._change(RTM_DELLINK, body, index, f"delete vlan {vid} on #{index}")
        except NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def delete_link(self, name_or_index: str | int) -> bool:
        """Delete a link; False when it is already gone."""
        if isinstance(name_or_index, str):
            body = _msg.del_link(name=name_or_index)
        else:
            body = _msg.del_link(index=name_or_index)
        try:
            self.nl.request(RTM_DELLINK, body, what=f"delete link {name_or_index}")
        except NetlinkError as exc:
            if exc.errno in _GONE:
                return False
            raise
        return True

    @staticmethod
    def _poll(timeout: float) -> Iterator[None]:
        """Yield at once, then after growing sleeps, until timeout (one last yield at the deadline)."""
        deadline = time.monotonic() + timeout
        steps = iter(_POLL_STEPS)
        while True:
            yield
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(next(steps, _POLL_STEPS[-1]), left))

    def wait_oper_up(self, index: int, timeout: float = 2.6) -> LinkInfo:
        """Poll until the link is oper-up (the reference waits 0+50+500+1000+1000 ms)."""
        for _ in self._poll(timeout):
            found = self.require(index)
            if found.oper_up:
                return found
        raise LinkNotUp(f"link #{index} did not come up", f"not oper-up after {timeout}s (bridge port in error?)")

    # --- addresses ---------------------------------------------------------------------------------

    def addrs(self, index: int | None = None, family: int | None = None) -> list[Addr]:
        body = _msg.addr_request(family or socket.AF_UNSPEC, index or 0)
        out = [_msg.parse_addr(m) for m in self.nl.dump(RTM_GETADDR, body, what="dump addresses")]
        return [a for a in out if (index is None or a.index == index)
                and (family is None or family == (socket.AF_INET if a.address.version == 4 else socket.AF_INET6))]

    def add_addr(self, index: int, iface: IPInterface, *, nodad: bool = False, noprefixroute: bool = False) -> bool:
        """Add iface on link index (``noprefixroute``: without the on-link route of its prefix); False when
        it is already there."""
        body = _msg.addr_change(index, iface, nodad=nodad, noprefixroute=noprefixroute)
        try:
            self._change(RTM_NEWADDR, body, index, f"add address {iface}")
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def del_addr(self, index: int, iface: IPInterface) -> bool:
        try:
            self._change(RTM_DELADDR, _msg.addr_change(index, iface), index, f"delete address {iface}")
        except NetlinkError as exc:
            if exc.errno in (errno.EADDRNOTAVAIL, errno.ENOENT):
                return False
            raise
        return True

    def wait_dad(self, index: int, timeout: float = 5.0) -> list[Addr]:
        """Wait until no IPv6 address on index is tentative; error on DAD failure or timeout."""
        for _ in self._poll(timeout):
            mine = self.addrs(index, socket.AF_INET6)
            failed = [a for a in mine if a.dadfailed]
            if failed:
                raise NetlinkError(errno.EADDRINUSE, f"duplicate address detected for {failed[0].address}")
            if not any(a.tentative for a in mine):
                return mine
        raise LinkNotUp(f"IPv6 addresses on #{index} still tentative", f"after {timeout}s")

    # --- routes ------------------------------------------------------------------------------------

    def routes(self, family: int, *, table: int = RT_TABLE_MAIN) -> list[Route]:
        out = [_msg.parse_route(m) for m in self.nl.dump(RTM_GETROUTE, _msg.route_request(family, table),
                                                        what="dump routes")]
        return [r for r in out if r.table == table]

    def route_to(self, addr: IPAddress) -> Route | None:
        """The FIB entry that routes addr here (policy rules applied: main, local, ... tables), or None when
        no route leads anywhere: none at all, or a blackhole (the kernel answers EINVAL), prohibit (EACCES)
        or unreachable (EHOSTUNREACH) route. One request, whatever the size of the tables."""
        try:
            replies = self.nl.request(RTM_GETROUTE, _msg.route_lookup(addr), what=f"look up route to {addr}")
        except NetlinkError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EINVAL, errno.EACCES, errno.ESRCH,
                             errno.ENOENT):
                return None
            raise
        return _msg.parse_route(replies[0]) if replies else None

    def add_route(
        self, dst: IPNetwork, gw: IPAddress | None = None, index: int | None = None, *,
        table: int = RT_TABLE_MAIN, priority: int | None = None, scope: int | None = None,
        mtu: int | None = None, src: IPAddress | None = None, onlink: bool = False,
    ) -> bool:
        """Add a unicast route (scope link when there is no gateway); False when it already exists."""
        if scope is None:
            scope = RT_SCOPE_LINK if gw is None and dst.version == 4 else RT_SCOPE_UNIVERSE
        body = _msg.route_change(dst, gw, index, table=table, priority=priority, scope=scope, proto=RTPROT_BOOT,
                                 mtu=mtu, src=src, onlink=onlink)
        try:
            self.nl.request(RTM_NEWROUTE, body, flags=NLM_F_CREATE | NLM_F_EXCL, what=f"add route {dst}")
        except NetlinkError as exc:
            if exc.errno == errno.EEXIST:
                return False
            if exc.errno == errno.ENODEV:
                raise LinkNotFound(f"link #{index} not found (add route {dst})") from exc
            raise
        return True

    def del_route(
        self, dst: IPNetwork, gw: IPAddress | None = None, index: int | None = None, *,
        table: int = RT_TABLE_MAIN, priority: int | None = None,
    ) -> bool:
        body = _msg.route_change(dst, gw, index, table=table, priority=priority, scope=RT_SCOPE_NOWHERE,
                                 proto=0, mtu=None, src=None, onlink=False, type_=0)
        try:
            self.nl.request(RTM_DELROUTE, body, what=f"delete route {dst}")
        except NetlinkError as exc:
            if exc.errno in (errno.ESRCH, errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # --- tap and tc redirect -----------------------------------------------------------------------

    def create_tap(
        self, name: str, *, uid: int | None = None, gid: int | None = None, vnet_hdr: bool = True,
        multi_queue: bool = False, mtu: int = 0, up: bool = True, alias: str | None = None,
        exclusive: bool = True, staging: str | None = None,
    ) -> LinkInfo:
        """A persistent tap in this socket's netns, then MTU, alias and up over netlink.

        ``exclusive`` (IFF_TUN_EXCL): LinkExists when the name is taken, even by an identical tap, so a
        caller never adopts someone else's. A tap made here that cannot be configured is deleted again.
        ``staging``: the tap is made under that name and gets ``name`` and ``alias`` in one message, so
        it never exists under ``name`` untagged (a caller killed in between leaves a link whose name
        tells whose it is); LinkExists when ``name`` is taken.
        """
        from .tap import create_tap as _create_tap  # VM modes only: not imported by a plain ADD/DEL

        made = staging or name
        actual = call_in(self.netns_fd, lambda: _create_tap(made, uid=uid, gid=gid, vnet_hdr=vnet_hdr,
                                                            multi_queue=multi_queue, exclusive=exclusive))
        index: int | None = None
        try:
            found = self.require(actual)
            index = found.index
            rename = name if staging is not None and found.name != name else None
            if (rename or (mtu and found.mtu != mtu) or (up and not found.up)
                    or (alias is not None and found.alias != alias)):
                try:
                    self.set_link(found.index, name=rename, mtu=mtu or None, up=True if up else None, alias=alias)
                except NetlinkError as exc:
                    if rename and exc.errno in (errno.EEXIST, errno.EBUSY):
                        raise LinkExists(f"cannot create tap {name}: a device of that name already exists in "
                                         "the network namespace", str(exc)) from exc
                    raise
                found = self.require(found.index)
        except BaseException:
            if exclusive:  # it is ours: do not leave a half-made tap for the next caller to trip over
                self.delete_link(index if index is not None else actual)
            raise
        return found

    # tc (VM mode tc-redirect) is imported on first use, not on every ADD/DEL.

    def has_ingress_qdisc(self, index: int) -> bool:
        from . import _tc

        return _tc.has_ingress_qdisc(self.nl, index)

    def add_tc_redirect(self, a_index: int, b_index: int) -> None:
        """Ingress qdisc on both links and a match-all u32 mirred egress redirect each way (idempotent)."""
        from . import _tc

        _tc.ensure_redirect(self.nl, a_index, b_index)
        _tc.ensure_redirect(self.nl, b_index, a_index)

    def has_tc_redirect(self, a_index: int, b_index: int) -> bool:
        from . import _tc

        return (b_index in _tc.redirect_targets(self.nl, a_index)
                and a_index in _tc.redirect_targets(self.nl, b_index))

    def del_ingress_qdisc(self, index: int) -> bool:
        """Remove the ingress qdisc (and so its filters); False when there is none or the link is gone."""
        from . import _tc

        return _tc.del_ingress_qdisc(self.nl, index)


if TYPE_CHECKING:
    from .ops import NetlinkOps

    _conforms: type[NetlinkOps] = Rtnl  # mypy checks Rtnl against the protocol the plugins program to
