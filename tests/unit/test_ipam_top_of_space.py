"""Ranges at the top of the address space wrap instead of overflowing; a failed ADD, whatever the
failure, leaves no lease behind; and an index is never vouched for after an error, so DEL and the next
ADD see what is on disk."""

from __future__ import annotations

import errno
from ipaddress import ip_address, ip_network
from typing import TYPE_CHECKING, Any

import pytest
from ipamenv import NET, Ipam

from cni_ignite.errors import CniError
from cni_ignite.ipam import sticky
from cni_ignite.ipam.allocator import allocate, candidates, first_free
from cni_ignite.ipam.config import Range
from cni_ignite.ipam.store import DiskStore

if TYPE_CHECKING:
    from pathlib import Path

    from cni_ignite.result import IPAddress

TOP6 = "ffff:ffff:ffff:ffff::/64"
TOP6_START = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd"
TOP6_RANGE = {"subnet": TOP6, "rangeStart": TOP6_START}  # ...fffd, ...fffe, ...ffff
TOP4_RANGE = {"subnet": "255.255.255.0/24", "rangeStart": "255.255.255.252"}  # .252, .253, .254
TWO_SETS = {"ranges": [[{"subnet": "10.88.0.0/24"}], [TOP6_RANGE]]}


@pytest.fixture
def ipam(tmp_path: Path) -> Ipam:
    return Ipam(tmp_path / "data")


def index_dir(ipam: Ipam) -> Path:
    return ipam.data_dir / ".ignite-index" / NET


# ------------------------------------------------------------------------------------------ allocator

def top_range(subnet: str, start: str, end: str) -> Range:
    net = ip_network(subnet)
    return Range(subnet=net, start=ip_address(start), end=ip_address(end), gateway=net.network_address + 1)


@pytest.mark.parametrize(("rng", "last", "expected"), [
    (top_range(TOP6, TOP6_START, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    (top_range(TOP6, TOP6_START, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
     ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"]),
    (top_range("255.255.255.0/24", "255.255.255.252", "255.255.255.254"), "255.255.255.254",
     ["255.255.255.252", "255.255.255.253", "255.255.255.254"]),
    (top_range("255.255.255.252/30", "255.255.255.253", "255.255.255.254"), "255.255.255.254",
     ["255.255.255.254"]),  # .253 is the gateway
])
def test_candidates_wrap_at_the_top_of_the_address_space(rng: Range, last: str, expected: list[str]) -> None:
    assert [str(ip) for ip in candidates((rng,), ip_address(last))] == expected


def test_a_full_range_at_the_top_of_the_space_is_reported_as_full() -> None:
    rs = (top_range(TOP6, TOP6_START, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),)

    class Full:
        def reserve(self, ip: IPAddress, range_id: int) -> bool:
            return False

        def release(self, ip: IPAddress) -> None: ...

        def last_reserved(self, range_id: int) -> IPAddress | None:
            return rs[0].end

    with pytest.raises(CniError, match=r"no IP addresses available in range set: ffff:.*:fffd-ffff:.*:ffff"):
        allocate(Full(), rs, 0, None)
    assert first_free(lambda ip: True, rs, rs[0].end) is None


# ------------------------------------------------------------------------------------------ plugin

@pytest.mark.parametrize(("ranges", "family"), [(TOP6_RANGE, 6), (TOP4_RANGE, 4)], ids=["ipv6", "ipv4"])
def test_full_range_at_the_top_of_the_space_gives_no_free_addresses_then_reuses_a_freed_one(
        ipam: Ipam, ranges: dict[str, Any], family: int) -> None:
    conf = ipam.conf(ranges)
    got = [ipam("ADD", conf, cid=f"c{i}").ips[0] for i in range(3)]
    for i in range(3, 5):  # repeatedly: the error is stable, not an overflow
        out = ipam("ADD", conf, cid=f"c{i}")
        assert out.doc is not None and out.doc["msg"].startswith("no IP addresses available in range set"), out.doc
        assert "internal error" not in out.doc["msg"]
    assert ipam("DEL", conf, cid="c1").rc == 0
    assert ipam("ADD", conf, cid="c9").ips == [got[1]]
    assert ipam("STATUS", conf).code == 50
    assert len(ipam.leases()) == 3 and all(ip_address(k).version == family for k in ipam.leases())


def test_multi_range_add_with_a_range_at_the_top_leaks_nothing(ipam: Ipam) -> None:
    """The reported case: a third-party range at the top of the v6 space fills up; the v4 address of the
    failing ADD is handed back and DEL has nothing left to find."""
    conf = ipam.conf(TWO_SETS)
    for i in range(3):
        assert ipam("ADD", conf, cid=f"c{i}").rc == 0
    before = ipam.files()
    out = ipam("ADD", conf, cid="late")
    assert out.doc is not None and out.doc["msg"].startswith("no IP addresses available in range set")
    assert ipam.files() == before  # leases and last_reserved_ip.* as they were
    assert ipam("DEL", conf, cid="late").rc == 0
    assert ipam("DEL", conf, cid="c0").rc == 0
    assert ipam("ADD", conf, cid="late").ips == ["10.88.0.5/24", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd/64"]


class Boom(Exception):
    """A failure that is not a CniError (a bug, a signal turned exception, a foreign error)."""


FAULTS = ["second set full", "allocator raises a foreign exception", "index write fails with OSError",
          "last_reserved_ip write fails"]


@pytest.mark.parametrize("fault", FAULTS)
def test_failed_multi_range_add_rolls_back_whatever_the_failure(ipam: Ipam, monkeypatch: pytest.MonkeyPatch,
                                                                fault: str) -> None:
    conf = ipam.conf({"ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "10.99.0.0/30"}]]})
    assert ipam("ADD", conf, cid="a").ips == ["10.88.0.2/24", "10.99.0.2/30"]
    if fault != "second set full":  # 10.99.0.0/30 has one address: a keeps it only to fill the set
        assert ipam("DEL", conf, cid="a").rc == 0
    if fault == "second set full":
        pass
    elif fault == "allocator raises a foreign exception":
        real = sticky.allocate

        def allocate_then_boom(store: Any, rs: Any, i: int, wanted: Any) -> IPAddress:
            if i == 1:
                raise Boom("second range broke")
            return real(store, rs, i, wanted)

        monkeypatch.setattr(sticky, "allocate", allocate_then_boom)
    elif fault == "index write fails with OSError":
        def set_index(self: DiskStore, owner: Any, ips: Any) -> None:
            raise OSError(errno.EIO, "I/O error")

        monkeypatch.setattr(DiskStore, "set_index", set_index)
    else:
        real_write = DiskStore._write_atomic

        def write_atomic(self: DiskStore, path: str, data: bytes) -> None:
            if path.endswith("last_reserved_ip.1"):
                raise OSError(errno.EIO, "I/O error")
            real_write(self, path, data)

        monkeypatch.setattr(DiskStore, "_write_atomic", write_atomic)
    before = ipam.files()
    if fault == "second set full":
        assert ipam("ADD", conf, cid="b").rc != 0
    elif fault == "allocator raises a foreign exception":
        with pytest.raises(Boom):  # the harness re-raises what skel reports as 999
            ipam("ADD", conf, cid="b")
    else:  # a file-system failure is an I/O error (5), not an internal one
        assert ipam("ADD", conf, cid="b").code == 5
    assert ipam.files() == before  # leases and last_reserved_ip.* as they were
    monkeypatch.undo()
    assert ipam("DEL", conf, cid="b").rc == 0
    assert ipam.files() == before
    assert ipam("CHECK", conf, cid="b").rc != 0


def test_index_is_not_vouched_for_after_an_exception(ipam: Ipam, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the rollback itself cannot release the lease, the index is not stamped fresh: the next
    DEL rebuilds it from the lease files and releases the address the failed ADD left."""
    conf = ipam.conf(TWO_SETS)
    assert ipam("ADD", conf, cid="a").rc == 0
    real = sticky.allocate

    def allocate_then_fail(store: Any, rs: Any, i: int, wanted: Any) -> IPAddress:
        if i == 1:
            raise OSError(errno.EIO, "I/O error")
        return real(store, rs, i, wanted)

    def release(self: DiskStore, ip: IPAddress) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(sticky, "allocate", allocate_then_fail)
    monkeypatch.setattr(DiskStore, "release", release)
    out = ipam("ADD", conf, cid="b")
    assert out.code == 5 and "I/O error" in out.text  # the ADD's own error, not the rollback's
    monkeypatch.undo()
    assert ipam.leases()["10.88.0.3"] == b"b\r\neth0"  # left behind by the failed rollback
    assert not (index_dir(ipam) / "stamp").exists()
    assert ipam("ADD", conf, cid="c").ips == ["10.88.0.4/24", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/64"]
    assert ipam("DEL", conf, cid="b").rc == 0
    assert set(ipam.leases()) == {"10.88.0.2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", "10.88.0.4",
                                  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"}
    assert (index_dir(ipam) / "stamp").read_bytes() == str(ipam.dir.stat().st_mtime_ns).encode()


def test_an_error_in_a_later_command_does_not_stamp_an_index_it_changed(ipam: Ipam,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """DEL releases a lease, then fails writing the index: the index still lists the lease; it must not be
    trusted, or the next ADD of that attachment would be told it holds an address it no longer holds."""
    conf = ipam.conf({"subnet": "10.1.0.0/29"})
    assert ipam("ADD", conf, cid="a").ips == ["10.1.0.2/29"]

    def set_index(self: DiskStore, owner: Any, ips: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DiskStore, "set_index", set_index)
    assert ipam("DEL", conf, cid="a").code == 5
    monkeypatch.undo()
    assert ipam.leases() == {}
    assert not (index_dir(ipam) / "stamp").exists()
    assert ipam("CHECK", conf, cid="a").rc != 0
    assert ipam("ADD", conf, cid="b").ips == ["10.1.0.3/29"]


def test_a_failed_first_add_leaves_only_the_lock_file(ipam: Ipam, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = ipam.conf(TWO_SETS)
    real = sticky.allocate

    def allocate_then_boom(store: Any, rs: Any, i: int, wanted: Any) -> IPAddress:
        if i == 1:
            raise Boom("second range broke")
        return real(store, rs, i, wanted)

    monkeypatch.setattr(sticky, "allocate", allocate_then_boom)
    with pytest.raises(Boom):
        ipam("ADD", conf, cid="a")
    assert ipam.files() == {"lock": b""}  # no lease, no last_reserved_ip.0
