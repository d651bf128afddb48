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

from ..errors import CniError
from .ops import LinkExists

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


class TapFailed(CniError):
    """The tun driver refused to create or configure a tap."""


def ifreq(name: str, flags: int) -> bytes:
    """struct ifreq with ifr_name and ifr_flags set (40 bytes on 64-bit Linux)."""
    raw = name.encode()
    if len(raw) >= IFNAMSIZ or not raw:
        raise ValueError(f"bad interface name {name!r}")
    return struct.pack("16sH22x", raw, flags)


def tap_flags(*, vnet_hdr: bool = True, multi_queue: bool = False) -> int:
    return IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0) | (IFF_MULTI_QUEUE if multi_queue else 0)


def create_tap(
    name: str, *, uid: int | None = None, gid: int | None = None, vnet_hdr: bool = True, multi_queue: bool = False
) -> str:
    """Create (or re-attach to an identical) persistent tap in the current netns; return its name.

    A name with ``%d`` lets the kernel choose (``tap%d``). Raises LinkExists when the name is taken by a
    device that is not a tap with the same flags, or a tap that another process holds open.
    """
    try:
        fd = os.open(TUN_DEV, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise TapFailed(f"cannot open {TUN_DEV}", str(exc)) from exc
    try:
        try:
            res = fcntl.ioctl(fd, TUNSETIFF, ifreq(name, tap_flags(vnet_hdr=vnet_hdr, multi_queue=multi_queue)))
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.EINVAL, errno.EEXIST):
                raise LinkExists(f"cannot create tap {name}: the name is in use", str(exc)) from exc
            raise TapFailed(f"cannot create tap {name}", str(exc)) from exc
        actual = res[:IFNAMSIZ].split(b"\0", 1)[0].decode()
        try:
            if uid is not None:
                fcntl.ioctl(fd, TUNSETOWNER, uid)
            if gid is not None:
                fcntl.ioctl(fd, TUNSETGROUP, gid)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as exc:
            raise TapFailed(f"cannot configure tap {actual}", str(exc)) from exc
        return actual
    finally:
        os.close(fd)
