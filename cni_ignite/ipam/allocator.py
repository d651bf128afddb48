"""Address allocation over a Store, host-local's algorithm: round-robin after the last reserved
address of each range set, skipping gateways; one address per range set; a requested address is
taken from the set that contains it. Pure apart from the Store it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..errors import CniError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..result import IPAddress
    from .config import RangeSet


class Store(Protocol):
    def reserve(self, ip: IPAddress, range_id: int) -> bool: ...
    def release(self, ip: IPAddress) -> None: ...
    def last_reserved(self, range_id: int) -> IPAddress | None: ...


def candidates(rs: RangeSet, last: IPAddress | None) -> Iterator[IPAddress]:
    """Every address of the set once, starting after `last` (or at the first range's start), wrapping."""
    gateways = {r.gateway for r in rs}
    start_range, start_ip = 0, rs[0].start
    if last is not None:
        for i, r in enumerate(rs):
            if r.contains(last):
                start_range, start_ip = i, last + 1
                if start_ip > r.end:  # type: ignore[operator]
                    start_range = (i + 1) % len(rs)
                    start_ip = rs[start_range].start
                break
    # Walk: the tail of the start range, the other ranges in order (wrapping), then the head of the start range.
    order: list[tuple[IPAddress, IPAddress]] = [(start_ip, rs[start_range].end)]
    order += [(r.start, r.end) for r in (rs[(start_range + k) % len(rs)] for k in range(1, len(rs)))]
    if start_ip > rs[start_range].start:  # type: ignore[operator]
        order.append((rs[start_range].start, start_ip - 1))
    for lo, end in order:
        ip = lo
        while ip <= end:  # type: ignore[operator]
            if ip not in gateways:
                yield ip
            ip += 1


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
    raise CniError(f"no IP addresses available in range set: {_describe(rs)}")


def first_free(is_taken: Callable[[IPAddress], bool], rs: RangeSet, last: IPAddress | None) -> IPAddress | None:
    """The address the next ADD would get, or None when the set is full (for STATUS)."""
    return next((ip for ip in candidates(rs, last) if not is_taken(ip)), None)


def _describe(rs: RangeSet) -> str:
    return ",".join(str(r) for r in rs)
