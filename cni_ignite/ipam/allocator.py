"""Address allocation over a Store, host-local's algorithm: round-robin after the last reserved
address of each range set, skipping gateways; one address per range set; a requested address is
taken from the set that contains it. Pure apart from the Store it is given.
"""

from __future__ import annotations

from ..errors import CniError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: no typing import on a plugin's path (cni_ignite/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Protocol

    from ..result import IPAddress
    from .config import RangeSet
else:
    Protocol = object  # Store is a protocol for mypy only


class Exhausted(CniError):
    """No free address is left in a range set (host-local's message and code)."""


class Store(Protocol):
    def reserve(self, ip: IPAddress, range_id: int) -> bool: ...
    def release(self, ip: IPAddress) -> None: ...
    def last_reserved(self, range_id: int) -> IPAddress | None: ...


def candidates(rs: RangeSet, last: IPAddress | None) -> Iterator[IPAddress]:
    """Every address of the set once, starting after `last` (or at the first range's start), wrapping.

    The walk counts in integers and makes an address only of a number inside a range, so a range that ends
    at the top of the address space (ffff:…:ffff, or an IPv4 range just below 255.255.255.255) wraps to
    its start instead of overflowing."""
    gateways = {r.gateway for r in rs}
    start_range, start = 0, int(rs[0].start)
    if last is not None:
        for i, r in enumerate(rs):
            if r.contains(last):
                if last == r.end:
                    start_range = (i + 1) % len(rs)
                    start = int(rs[start_range].start)
                else:
                    start_range, start = i, int(last) + 1
                break
    # Walk: the tail of the start range, the other ranges in order (wrapping), then the head of the start range.
    first = rs[start_range]
    spans = [(start, int(first.end))]
    spans += [(int(r.start), int(r.end)) for r in (rs[(start_range + k) % len(rs)] for k in range(1, len(rs)))]
    if start > int(first.start):
        spans.append((int(first.start), start - 1))
    make = type(first.start)
    for lo, hi in spans:
        for n in range(lo, hi + 1):
            ip = make(n)
            if ip not in gateways:
                yield ip


def allocate(store: Store, rs: RangeSet, range_id: int, requested: IPAddress | None) -> IPAddress:
    """Reserve one address of range set `rs`: `requested` if given, else the next free one."""
    if requested is not None:
        if any(r.gateway == requested for r in rs if r.contains(requested)):
            raise CniError(f"requested ip {requested} is subnet's gateway")
        if not store.reserve(requested, range_id):
            raise CniError(f"requested IP address {requested} is not available in range set {_describe(rs)}")
        return requested
    for ip in candidates(rs, store.last_reserved(range_id)):
        if store.reserve(ip, range_id):
            return ip
    raise Exhausted(f"no IP addresses available in range set: {_describe(rs)}")


def first_free(is_taken: Callable[[IPAddress], bool], rs: RangeSet, last: IPAddress | None) -> IPAddress | None:
    """The address the next ADD would get, or None when the set is full (for STATUS)."""
    return next((ip for ip in candidates(rs, last) if not is_taken(ip)), None)


def _describe(rs: RangeSet) -> str:
    return ",".join(str(r) for r in rs)
