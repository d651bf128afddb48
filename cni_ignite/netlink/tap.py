"""Persistent TAP devices through ``/dev/net/tun`` (the kernel cannot create a tap over netlink).

``TUNSETIFF`` creates the device in the caller's *current* network namespace: enter the container's
netns first (:func:`cni_ignite.netlink.netns.entered`, or use ``Rtnl.create_tap``). The device is made
persistent and our fd is closed, so a VMM (Firecracker opens ``IFF_TAP|IFF_NO_PI|IFF_VNET_HDR``,
single queue) can attach to it later; its MTU and up state are then set over netlink.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from ..errors import CniError, IOFailure
from .ops import TAP_MAX_ID, LinkExists

TUN_DEV = "/dev/net/tun"
IFNAMSIZ = 16
# _IOW('T', n, int)
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000


class TapFailed(CniError):
    """The tun driver refused to create or configure a tap."""


def ifreq(name: str, flags: int) -> bytes:
    """struct ifreq with ifr_name and ifr_flags set (40 bytes on 64-bit Linux)."""
    raw = name.encode()
    if len(raw) >= IFNAMSIZ or not raw:
        raise ValueError(f"bad interface name {name!r}")
    return struct.pack("16sH22x", raw, flags)


def tap_flags(*, vnet_hdr: bool = True, multi_queue: bool = False, exclusive: bool = False) -> int:
    return (IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0) | (IFF_MULTI_QUEUE if multi_queue else 0)
            | (IFF_TUN_EXCL if exclusive else 0))


def _id_arg(value: int, what: str) -> int:
    """The ioctl's int argument for a uid/gid: values of 2**31 and above travel as their 32-bit two's
    complement (fcntl.ioctl takes a C int; the kernel reads the low 32 bits as uid_t)."""
    if not 0 <= value <= TAP_MAX_ID:
        raise TapFailed(f"invalid tap {what} {value}", f"must be 0..{TAP_MAX_ID}")
    return value - 2**32 if value >= 2**31 else value


def create_tap(
    name: str, *, uid: int | None = None, gid: int | None = None, vnet_hdr: bool = True, multi_queue: bool = False,
    exclusive: bool = False,
) -> str:
    """Create a persistent tap in the current netns (or, unless exclusive, re-attach to an identical one);
    return its name.

    A name with ``%d`` lets the kernel choose (``tap%d``). Raises LinkExists when the name is taken by a
    device that is not a tap with the same flags, a tap that another process holds open, or (exclusive,
    IFF_TUN_EXCL) any device at all. An exclusive tap that cannot be configured is not left persistent.
    """
    owner = _id_arg(uid, "owner") if uid is not None else None
    group = _id_arg(gid, "group") if gid is not None else None
    flags = tap_flags(vnet_hdr=vnet_hdr, multi_queue=multi_queue, exclusive=exclusive)
    try:
        fd = os.open(TUN_DEV, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise IOFailure(f"cannot open {TUN_DEV}", str(exc)) from exc
    try:
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, ifreq(name, flags))
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EINVAL, errno.EEXIST):
                raise LinkExists(f"cannot create tap {name}: a device of that name already exists in the "
                                 "network namespace", str(exc)) from exc
            raise TapFailed(f"cannot create tap {name}", str(exc)) from exc
        actual = res[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        try:
            if owner is not None:
                fcntl.ioctl(fd, TUNSETOWNER, owner)
            if group is not None:
                fcntl.ioctl(fd, TUNSETGROUP, group)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)  # last: a failure before it lets the device go with our fd
        except OSError as exc:
            raise TapFailed(f"cannot configure tap {actual}", str(exc)) from exc
        return actual
    finally:
        os.close(fd)
