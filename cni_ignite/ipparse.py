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

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The characters of an address, checked with str methods rather than regexes compiled at import on every
# plugin call (benchmarks/IMPORTS.md); the same language as r"[0-9A-Fa-f.:]{2,45}\Z" (an address) and
# r"[0-9A-Fa-f.:]{2,45}(/[0-9.]{1,15})?\Z" (with a prefix), tests/unit/test_import_cost.py compares them.
_ADDRESS_CHARS = "0123456789abcdefABCDEF.:"
_PREFIX_CHARS = "0123456789."


def _address_chars(text: str) -> bool:
    return 2 <= len(text) <= 45 and not text.strip(_ADDRESS_CHARS)


def _prefixed_chars(text: str) -> bool:
    address, slash, prefix = text.partition("/")
    return _address_chars(address) and (not slash or (1 <= len(prefix) <= 15 and not prefix.strip(_PREFIX_CHARS)))


def _text(value: object, check: Callable[[str], bool], what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if "%" in value:
        raise ValueError(f"{what} {value!r}: scoped addresses (%zone) are not allowed")
    if not check(value):
        raise ValueError(f"{what} {value!r} is not an IP address")
    return value


def ip_address(value: object, what: str = "address") -> IPAddress:
    return ipaddress.ip_address(_text(value, _address_chars, what))


def ip_interface(value: object, what: str = "address") -> IPInterface:
    """An address with an optional prefix (``10.0.0.2/24``; no prefix = a host prefix)."""
    return ipaddress.ip_interface(_text(value, _prefixed_chars, what))


def ip_network(value: object, what: str = "network", *, strict: bool = False) -> IPNetwork:
    return ipaddress.ip_network(_text(value, _prefixed_chars, what), strict=strict)
