"""`loopback`: brings ``lo`` up in the container's network namespace (containerd's CRI runs it on every pod).

The same bundle as ignite-bridge/ignite-ipam; `cni-ignite install` links it as ``loopback`` only when the
bin dir has none. It behaves like the reference plugin (containernetworking/plugins ``loopback``):

* ADD: ``lo`` up; the result names ``lo`` (mac 00:00:00:00:00:00, sandbox CNI_NETNS) with its first IPv4
  and first IPv6 address (127.0.0.1/8, ::1/128). A ``prevResult`` is passed through unchanged. A
  non-loopback address on ``lo`` is an error. CNI_IFNAME is ignored: this plugin only knows ``lo``.
* DEL: ``lo`` down while the namespace exists; no CNI_NETNS or a vanished one is success.
* CHECK: ``lo`` is up.  GC, STATUS: nothing to do.

Unlike the reference, the caller's own namespace is refused: a DEL there would take the host's ``lo`` down.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its IntEnums and selectors cost ~3 ms per call
import os

from .errors import CniError, InvalidNetns, NotFound, UnknownContainer
from .result import Interface, IPConfig, Result, decode
from .skel import Handlers

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from .netlink.ops import LinkInfo
    from .netlink.rtnl import Rtnl
    from .skel import CmdArgs

LO = "lo"
LO_MAC = "00:00:00:00:00:00"


def _open(netns: str) -> Rtnl:
    """A netlink socket in `netns`; NotFound (NetnsGone) when the path is gone, InvalidNetns for our own."""
    from .netlink.netns import is_current, open_netns
    from .netlink.rtnl import Rtnl

    fd = open_netns(netns)
    try:
        if is_current(fd):
            raise InvalidNetns("CNI_NETNS is this process's own network namespace",
                               f"{netns}: loopback only changes a container's lo, never the host's")
        return Rtnl(fd)
    finally:
        os.close(fd)


def _open_existing(netns: str) -> Rtnl:
    try:
        return _open(netns)
    except NotFound as exc:
        raise UnknownContainer(f"container network namespace {netns} does not exist", str(exc)) from exc


def _lo(nl: Rtnl, netns: str) -> LinkInfo:
    found = nl.link(LO)
    if found is None:
        raise CniError("no loopback interface", f"{netns} has no {LO}")
    return found


def add(cmd: CmdArgs) -> Result:
    prev = decode(cmd.conf.prev_result) if cmd.conf.prev_result else None
    with _open_existing(cmd.netns) as nl:
        lo = _lo(nl, cmd.netns)
        nl.set_link(lo.index, up=True)
        found: list[IPConfig] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            addrs = [a.address for a in nl.addrs(lo.index, family)]
            strange = [a for a in addrs if not a.ip.is_loopback]
            if strange:
                raise CniError(f"loopback interface found with non-loopback address {strange[0].ip}",
                               ", ".join(str(a) for a in addrs))
            if addrs:
                found.append(IPConfig(address=addrs[0], interface=0))
    if prev is not None:
        return prev
    return Result(interfaces=(Interface(name=LO, mac=LO_MAC, sandbox=cmd.netns),), ips=tuple(found))


def delete(cmd: CmdArgs) -> None:
    if not cmd.netns:
        return
    try:
        nl = _open(cmd.netns)
    except NotFound:
        return  # the namespace is gone, and its lo with it
    with nl:
        lo = nl.link(LO)
        if lo is not None and lo.up:
            nl.set_link(lo.index, up=False)


def check(cmd: CmdArgs) -> None:
    with _open_existing(cmd.netns) as nl:
        if not _lo(nl, cmd.netns).up:
            raise CniError("loopback interface is down", f"lo in {cmd.netns}")


def nothing(cmd: CmdArgs) -> None:
    """GC and STATUS: the plugin keeps no state and needs nothing on the host."""


HANDLERS = Handlers(add=add, delete=delete, check=check, gc=nothing, status=nothing)
