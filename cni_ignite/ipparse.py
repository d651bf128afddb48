"""Strict address parsing for everything that comes from input (config, CNI_ARGS, results, records).

Python's ``ipaddress`` accepts an IPv6 scope ID after ``%`` and keeps *any* text there, newlines
included, in ``str()`` of the value: ``fe80::1%lo\\nCOMMIT`` parses. A scoped address is never a valid
CNI address (leases, rules and results are keyed by the plain address), and its text must never reach an
iptables-restore / nft script or a file name. These wrappers accept only ``str`` input with the
characters of an address (hex digits, ``.``, ``:``, ``/``), so ``str()`` of what they return is text we
produced from a parsed value. They raise ``ValueError`` (callers turn it into their CNI error).
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ADDRESS_CHARS = re.compile(r"[0-9A-Fa-f.:]{2,45}\Z")
_PREFIXED_CHARS = re.compile(r"[0-9A-Fa-f.:]{2,45}(/[0-9.]{1,15})?\Z")


def _text(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if "%" in value:
        raise ValueError(f"{what} {value!r}: scoped addresses (%zone) are not allowed")
    if not pattern.match(value):
        raise ValueError(f"{what} {value!r} is not an IP address")
    return value


def ip_address(value: object, what: str = "address") -> IPAddress:
    return ipaddress.ip_address(_text(value, _ADDRESS_CHARS, what))


def ip_interface(value: object, what: str = "address") -> IPInterface:
    """An address with an optional prefix (``10.0.0.2/24``; no prefix = a host prefix)."""
    return ipaddress.ip_interface(_text(value, _PREFIXED_CHARS, what))


def ip_network(value: object, what: str = "network", *, strict: bool = False) -> IPNetwork:
    return ipaddress.ip_network(_text(value, _PREFIXED_CHARS, what), strict=strict)
