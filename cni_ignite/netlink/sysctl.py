"""Network sysctls through /proc/sys, written only when the value differs.

``/proc/sys/net`` shows the namespace of the process that *opens* the file, so to change a container's
values run these inside :func:`cni_ignite.netlink.netns.entered`. Keys are dotted or slashed paths below
``/proc/sys`` (``net.ipv4.ip_forward`` or ``net/ipv4/ip_forward``); interface names may contain dots,
so the per-interface helpers build slashed paths.
"""

from __future__ import annotations

import contextlib
import os

from ..errors import IOFailure, NotFound

ROOT = "/proc/sys/"


class SysctlMissing(NotFound):
    """The key does not exist (module not loaded, IPv6 disabled, interface gone)."""


def _path(key: str) -> str:
    if key.startswith("/"):
        return key
    return ROOT + (key if "/" in key else key.replace(".", "/"))


def read(key: str) -> str:
    path = _path(key)
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except FileNotFoundError as exc:
        raise SysctlMissing(f"no sysctl {path}") from exc
    except OSError as exc:
        raise IOFailure(f"cannot read {path}", str(exc)) from exc


def write(key: str, value: str | int) -> bool:
    """Set key to value unless it already has it; True when a write happened."""
    path = _path(key)
    want = str(value)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise SysctlMissing(f"no sysctl {path}") from exc
    except OSError as exc:
        raise IOFailure(f"cannot open {path}", str(exc)) from exc
    try:
        if os.read(fd, 64).decode("ascii", "replace").strip() == want:
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, want.encode() + b"\n")
        return True
    except OSError as exc:
        raise IOFailure(f"cannot write {want} to {path}", str(exc)) from exc
    finally:
        os.close(fd)


def _conf(family: str, ifname: str, key: str) -> str:
    if "/" in ifname or ifname in ("", ".", ".."):
        raise ValueError(f"bad interface name {ifname!r}")
    return f"net/{family}/conf/{ifname}/{key}"


def set_ipv4(ifname: str, key: str, value: str | int) -> bool:
    """net.ipv4.conf.<ifname>.<key> (ifname may be all/default); e.g. arp_notify, route_localnet."""
    return write(_conf("ipv4", ifname, key), value)


def set_ipv6(ifname: str, key: str, value: str | int) -> bool:
    """net.ipv6.conf.<ifname>.<key>; e.g. accept_dad, enhanced_dad, accept_ra, disable_ipv6, keep_addr_on_down."""
    return write(_conf("ipv6", ifname, key), value)


def enable_ip_forward(version: int) -> bool:
    return write("net/ipv4/ip_forward" if version == 4 else "net/ipv6/conf/all/forwarding", 1)


def arp_notify(ifname: str, on: bool = True) -> bool:
    return set_ipv4(ifname, "arp_notify", int(on))


def route_localnet(ifname: str, on: bool = True) -> bool:
    return set_ipv4(ifname, "route_localnet", int(on))


def accept_ra(ifname: str, value: int) -> bool:
    return set_ipv6(ifname, "accept_ra", value)


def set_dad(ifname: str, *, enabled: bool) -> None:
    """As the reference bridge plugin: enabled → enhanced_dad=1, accept_dad=1; else accept_dad=0.

    enhanced_dad appeared in Linux 4.15; a kernel without it is tolerated.
    """
    if enabled:
        with contextlib.suppress(SysctlMissing):
            set_ipv6(ifname, "enhanced_dad", 1)
        set_ipv6(ifname, "accept_dad", 1)
    else:
        set_ipv6(ifname, "accept_dad", 0)


def enable_ipv6(ifname: str) -> None:
    """disable_ipv6=0 on lo and ifname, keep_addr_on_down=1 on ifname (what the reference does for v6)."""
    set_ipv6("lo", "disable_ipv6", 0)
    set_ipv6(ifname, "disable_ipv6", 0)
    set_ipv6(ifname, "keep_addr_on_down", 1)
