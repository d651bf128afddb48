"""tc messages for the veth<->tap redirect, hand-encoded with struct.

pyroute2's ``tcmsg`` package imports every qdisc, classifier, action and ematch module (+17-23 ms
measured with ``-X importtime``, see benchmarks/NETLINK.md) for the three messages we need, so these are
built here with struct, exactly as tc-redirect-tap (vishvananda/netlink) and iproute2's ``tc`` lay them
out:

* ``ingress`` qdisc: handle ffff:, parent TC_H_INGRESS;
* u32 filter on parent ffff:, protocol ETH_P_ALL, one all-zero key with TC_U32_TERMINAL (match all),
  action ``mirred egress redirect dev <target>`` with TC_ACT_STOLEN.
"""

from __future__ import annotations

import errno
import struct

from ._nl import HDR_SIZE, NLM_F_CREATE, NLM_F_EXCL, iter_nla, nest, nla
from .ops import NetlinkError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from typing import NamedTuple as Record

    from ._nl import NetlinkSocket
else:
    from .. import Record

RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46

TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000
ETH_P_ALL = 0x0003
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_U32_SEL = 5
TCA_U32_ACT = 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND = 1
TCA_ACT_OPTIONS = 2
TCA_MIRRED_PARMS = 2
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1

_TCMSG = struct.Struct("=BBHiIII")  # family, pad, pad, ifindex, handle, parent, info
_U32_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = struct.Struct("=IIii")  # mask, val, off, offmask
_MIRRED = struct.Struct("=IIiiiiI")  # index, capab, action, refcnt, bindcnt, eaction, ifindex


def tcmsg(ifindex: int, *, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    return _TCMSG.pack(0, 0, 0, ifindex, handle, parent, info)


def ingress_qdisc(ifindex: int) -> bytes:
    """Body of RTM_NEWQDISC / RTM_DELQDISC for the ingress qdisc of ifindex."""
    return tcmsg(ifindex, handle=INGRESS_HANDLE, parent=TC_H_INGRESS) + nla(TCA_KIND, b"ingress\0")


def qdisc_dump() -> bytes:
    return tcmsg(0)


def filter_dump(ifindex: int) -> bytes:
    return tcmsg(ifindex, parent=INGRESS_HANDLE)


def redirect_filter(ifindex: int, target: int, *, prio: int = 0) -> bytes:
    """Body of RTM_NEWTFILTER: on ifindex's ingress, redirect every frame to target's egress."""
    protocol_be = struct.unpack("=H", struct.pack("!H", ETH_P_ALL))[0]
    sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
    mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, target)
    action = nest(
        1,
        nla(TCA_ACT_KIND, b"mirred\0"),
        nest(TCA_ACT_OPTIONS, nla(TCA_MIRRED_PARMS, mirred), flagged=True),
    )
    options = nest(TCA_OPTIONS, nla(TCA_U32_SEL, sel), nest(TCA_U32_ACT, action))
    return tcmsg(ifindex, parent=INGRESS_HANDLE, info=(prio << 16) | protocol_be) + nla(TCA_KIND, b"u32\0") + options


class TcObject(Record):
    ifindex: int
    handle: int
    parent: int
    kind: str
    redirects_to: tuple[int, ...] = ()  # mirred egress-redirect targets (filters only)


def _kind(payload: memoryview) -> str:
    return bytes(payload).rstrip(b"\0").decode(errors="replace")


def _mirred_targets(options: memoryview) -> tuple[int, ...]:
    out: list[int] = []
    for kind, acts in iter_nla(options):
        if kind != TCA_U32_ACT:
            continue
        for _, act in iter_nla(acts):
            attrs = dict(iter_nla(act))
            if TCA_ACT_KIND not in attrs or _kind(attrs[TCA_ACT_KIND]) != "mirred":
                continue
            for pkind, parms in iter_nla(attrs.get(TCA_ACT_OPTIONS, memoryview(b""))):
                if pkind == TCA_MIRRED_PARMS and len(parms) >= _MIRRED.size:
                    _, _, _, _, _, eaction, ifindex = _MIRRED.unpack_from(parms)
                    if eaction == TCA_EGRESS_REDIR:
                        out.append(ifindex)
    return tuple(out)


def parse(raw: bytes) -> TcObject:
    """A qdisc or filter message (whole, header included)."""
    _, _, _, ifindex, handle, parent, _ = _TCMSG.unpack_from(raw, HDR_SIZE)
    kind = ""
    targets: tuple[int, ...] = ()
    for akind, payload in iter_nla(raw, HDR_SIZE + _TCMSG.size):
        if akind == TCA_KIND:
            kind = _kind(payload)
        elif akind == TCA_OPTIONS and kind == "u32":
            targets = _mirred_targets(payload)
    return TcObject(ifindex, handle, parent, kind, targets)


# --- operations on a socket (Rtnl delegates here) ----------------------------------------------------

_ABSENT = (errno.EINVAL, errno.ENOENT, errno.ENODEV)


def _objects(nl: NetlinkSocket, msg_type: int, body: bytes, what: str) -> list[TcObject]:
    return [parse(m) for m in nl.dump(msg_type, body, what=what)]


def has_ingress_qdisc(nl: NetlinkSocket, index: int) -> bool:
    return any(q.ifindex == index and q.parent == TC_H_INGRESS
               for q in _objects(nl, RTM_GETQDISC, qdisc_dump(), "dump qdiscs"))


def redirect_targets(nl: NetlinkSocket, index: int) -> set[int]:
    """ifindexes that u32 filters on index's ingress redirect to (empty without qdisc or link)."""
    try:
        found = _objects(nl, RTM_GETTFILTER, filter_dump(index), f"dump filters of #{index}")
    except NetlinkError as exc:
        if exc.errno in _ABSENT:
            return set()
        raise
    return {t for f in found if f.kind == "u32" for t in f.redirects_to}


def ensure_redirect(nl: NetlinkSocket, src: int, dst: int) -> None:
    """Ingress qdisc on src and one src->dst redirect filter, each added only if missing."""
    if not has_ingress_qdisc(nl, src):
        try:
            nl.request(RTM_NEWQDISC, ingress_qdisc(src), flags=NLM_F_CREATE | NLM_F_EXCL,
                       what=f"add ingress qdisc on #{src}")
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise
    if dst not in redirect_targets(nl, src):
        nl.request(RTM_NEWTFILTER, redirect_filter(src, dst), flags=NLM_F_CREATE | NLM_F_EXCL,
                   what=f"add redirect filter #{src}->#{dst}")


def del_ingress_qdisc(nl: NetlinkSocket, index: int) -> bool:
    try:
        nl.request(RTM_DELQDISC, ingress_qdisc(index), what=f"delete ingress qdisc on #{index}")
    except NetlinkError as exc:
        if exc.errno in _ABSENT:
            return False
        raise
    return True
