"""Delete conntrack entries over ``NETLINK_NETFILTER`` (ctnetlink), as the reference portmap does for
UDP host ports: a client that was already sending to a port before its mapping existed has a conntrack
entry without DNAT, and keeps reaching the host (not the container) until that entry is gone.

One dump of the family's table (the kernel's own entries, not ours: its size is the host's connection
count, paid only by ADDs with UDP mappings), filtered here by protocol and original destination port,
then one ``IPCTNL_MSG_CT_DELETE`` per match carrying the entry's original tuple (and zone) as dumped.
Stdlib only: the messages are built with struct like the rtnetlink ones.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its IntEnums and selectors cost ~3 ms per call
import errno
import struct

from ._nl import NETLINK_CAP_ACK, NETLINK_EXT_ACK, RECV_TIMEOUT, SOL_NETLINK, NetlinkSocket, iter_nla, nla
from .ops import NetlinkError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
CTA_TUPLE_ORIG, CTA_ZONE = 1, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_PROTO_NUM, CTA_PROTO_DST_PORT = 1, 3
NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big endian)
NFGEN_SIZE = NFGEN.size
HDR_SIZE = 16
IPPROTO = {"tcp": 6, "udp": 17, "sctp": 132}


def _msg_type(cmd: int) -> int:
    return (NFNL_SUBSYS_CTNETLINK << 8) | cmd


def _nfgen(family: int) -> bytes:
    return NFGEN.pack(family, 0, 0)


def open_netfilter_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))
        sock.settimeout(RECV_TIMEOUT)
    except OSError:
        sock.close()
        raise
    return sock


def _orig_proto_port(tuple_attr: memoryview) -> tuple[int, int] | None:
    for kind, payload in iter_nla(tuple_attr):
        if kind == CTA_TUPLE_PROTO:
            attrs = dict(iter_nla(payload))
            if CTA_PROTO_NUM not in attrs:
                return None
            num = attrs[CTA_PROTO_NUM][0]
            port = struct.unpack(">H", attrs[CTA_PROTO_DST_PORT][:2])[0] if CTA_PROTO_DST_PORT in attrs else -1
            return num, port
    return None


def matching_entries(parts: Iterable[bytes], proto: int, ports: set[int]) -> list[bytes]:
    """The delete bodies' attributes (original tuple, zone) of dumped entries whose original
    destination port is one of ports for protocol proto. Pure: tests feed it dumped messages."""
    out = []
    for msg in parts:
        view = memoryview(msg)
        orig = zone = None
        for kind, payload in iter_nla(view, HDR_SIZE + NFGEN_SIZE):
            if kind == CTA_TUPLE_ORIG:
                orig = payload
            elif kind == CTA_ZONE:
                zone = payload
        if orig is None:
            continue
        found = _orig_proto_port(orig)
        if found is not None and found[0] == proto and found[1] in ports:
            attrs = nla(CTA_TUPLE_ORIG | 0x8000, bytes(orig))
            if zone is not None:
                attrs += nla(CTA_ZONE, bytes(zone))
            out.append(attrs)
    return out


def delete_by_dst_port(proto: str, ports: Iterable[int], families: Iterable[int] = (4, 6)) -> int:
    """Delete the current netns's conntrack entries of proto whose original destination port is one of
    ports; returns how many were deleted. An entry that vanished meanwhile is not an error."""
    wanted = set(ports)
    if not wanted:
        return 0
    nl = NetlinkSocket(open_netfilter_socket())
    deleted = 0
    try:
        for family in families:
            af = socket.AF_INET if family == 4 else socket.AF_INET6
            parts = nl.dump(_msg_type(IPCTNL_MSG_CT_GET), _nfgen(af), what="conntrack dump")
            for attrs in matching_entries(parts, IPPROTO[proto], wanted):
                try:
                    nl.request(_msg_type(IPCTNL_MSG_CT_DELETE), _nfgen(af) + attrs, what="conntrack delete")
                    deleted += 1
                except NetlinkError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
    finally:
        nl.close()
    return deleted
