"""host-local's allocation algorithm over a fake store: round robin, wrap, gateway skip, range sets."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING

import pytest

from cni_ignite.errors import CniError
from cni_ignite.ipam.allocator import allocate, candidates, first_free
from cni_ignite.ipam.config import Range

if TYPE_CHECKING:
    from cni_ignite.result import IPAddress


class FakeStore:
    def __init__(self, taken: tuple[str, ...] = (), last: dict[int, str] | None = None) -> None:
        self.taken = {ip_address(t) for t in taken}
        self.last = {k: ip_address(v) for k, v in (last or {}).items()}
        self.attempts: list[IPAddress] = []

    def reserve(self, ip: IPAddress, range_id: int) -> bool:
        self.attempts.append(ip)
        if ip in self.taken:
            return False
        self.taken.add(ip)
        self.last[range_id] = ip
        return True

    def release(self, ip: IPAddress) -> None:
        self.taken.discard(ip)

    def last_reserved(self, range_id: int) -> IPAddress | None:
        return self.last.get(range_id)


def rng(subnet: str, start: str = "", end: str = "", gw: str = "") -> Range:
    net = ip_network(subnet)
    first = net.network_address + 1
    last = net.broadcast_address - (1 if net.version == 4 else 0)
    return Range(subnet=net, start=ip_address(start) if start else first, end=ip_address(end) if end else last,
                 gateway=ip_address(gw) if gw else first)


def ips(*xs: IPAddress | None) -> list[str]:
    return [str(x) for x in xs]


SET24 = (rng("10.1.0.0/29"),)  # .1 gateway, .2-.6 usable


def test_first_address_after_the_gateway() -> None:
    assert str(allocate(FakeStore(), SET24, 0, None)) == "10.1.0.2"


def test_allocation_resumes_after_last_reserved_ip() -> None:
    store = FakeStore(last={0: "10.1.0.3"})
    assert ips(allocate(store, SET24, 0, None), allocate(store, SET24, 0, None)) == ["10.1.0.4", "10.1.0.5"]


def test_freed_address_is_not_reused_until_the_pool_wraps() -> None:
    store = FakeStore()
    got = [allocate(store, SET24, 0, None) for _ in range(3)]
    store.release(got[0])
    assert ips(allocate(store, SET24, 0, None), allocate(store, SET24, 0, None)) == ["10.1.0.5", "10.1.0.6"]
    assert str(allocate(store, SET24, 0, None)) == "10.1.0.2"  # wrapped


def test_allocation_wraps_from_the_range_end_to_the_start() -> None:
    store = FakeStore(taken=("10.1.0.3",), last={0: "10.1.0.6"})
    assert str(allocate(store, SET24, 0, None)) == "10.1.0.2"
    assert str(allocate(store, SET24, 0, None)) == "10.1.0.4"


def test_network_broadcast_and_gateway_are_never_offered() -> None:
    assert ips(*candidates(SET24, None)) == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]


def test_gateway_inside_the_range_is_skipped() -> None:
    rs = (rng("10.1.0.0/29", gw="10.1.0.4"),)
    assert ips(*candidates(rs, None)) == ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.5", "10.1.0.6"]


def test_every_candidate_is_offered_once_from_any_starting_point() -> None:
    rs = (rng("10.1.0.0/28", "10.1.0.4", "10.1.0.9"), rng("10.2.0.0/29"))
    full = sorted(candidates(rs, None))
    for last in [None, *full, ip_address("10.1.0.2"), ip_address("10.9.9.9")]:
        got = list(candidates(rs, last))
        assert sorted(got) == full, last
        assert len(got) == len(set(got))


def test_last_reserved_outside_the_set_starts_at_the_first_range() -> None:
    assert str(next(candidates(SET24, ip_address("192.168.0.9")))) == "10.1.0.2"


def test_multi_range_set_continues_into_the_next_range_and_wraps_to_the_first() -> None:
    rs = (rng("10.1.0.0/30"), rng("10.2.0.0/30"))  # usable .2 each (.1 gateways)
    store = FakeStore()
    assert ips(*(allocate(store, rs, 0, None) for _ in range(2))) == ["10.1.0.2", "10.2.0.2"]
    store.release(ip_address("10.1.0.2"))
    assert str(allocate(store, rs, 0, None)) == "10.1.0.2"


def test_ipv6_range_set() -> None:
    rs = (rng("fd00:61::/126"),)
    store = FakeStore()
    assert ips(*(allocate(store, rs, 0, None) for _ in range(2))) == ["fd00:61::2", "fd00:61::3"]


def test_range_sets_keep_separate_last_reserved_addresses() -> None:
    v4, v6 = (rng("10.1.0.0/24"),), (rng("fd00::/64"),)
    store = FakeStore(last={0: "10.1.0.9", 1: "fd00::20"})
    assert ips(allocate(store, v4, 0, None), allocate(store, v6, 1, None)) == ["10.1.0.10", "fd00::21"]


def test_exhaustion_error_names_the_range() -> None:
    rs = (rng("10.1.0.0/29", "10.1.0.2", "10.1.0.4"), rng("10.2.0.0/30"))
    store = FakeStore(taken=("10.1.0.2", "10.1.0.3", "10.1.0.4", "10.2.0.2"))
    with pytest.raises(CniError) as exc:
        allocate(store, rs, 0, None)
    assert exc.value.msg == "no IP addresses available in range set: 10.1.0.2-10.1.0.4,10.2.0.1-10.2.0.2"
    assert sorted(store.attempts) == sorted(store.taken)  # each candidate tried exactly once


def test_requested_address_is_reserved() -> None:
    store = FakeStore()
    assert str(allocate(store, SET24, 0, ip_address("10.1.0.5"))) == "10.1.0.5"
    assert store.last == {0: ip_address("10.1.0.5")}


def test_error_when_requested_address_is_the_gateway() -> None:
    with pytest.raises(CniError, match=r"requested ip 10.1.0.1 is subnet's gateway"):
        allocate(FakeStore(), SET24, 0, ip_address("10.1.0.1"))


def test_error_when_requested_address_is_taken() -> None:
    with pytest.raises(CniError, match=r"requested IP address 10.1.0.3 is not available in range set 10.1.0.1-"):
        allocate(FakeStore(taken=("10.1.0.3",)), SET24, 0, ip_address("10.1.0.3"))


def test_first_free_reports_the_next_address_or_none_when_full() -> None:
    taken = {ip_address(f"10.1.0.{i}") for i in (2, 3)}
    assert str(first_free(taken.__contains__, SET24, ip_address("10.1.0.6"))) == "10.1.0.4"
    full = {ip_address(f"10.1.0.{i}") for i in range(2, 7)}
    assert first_free(full.__contains__, SET24, None) is None
