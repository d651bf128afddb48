"""State records and the host port registry (no root needed: a temporary state_dir)."""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.firewall import state
from cni_ignite.firewall.base import FirewallConfig, Owner, PortMapping

if TYPE_CHECKING:
    from pathlib import Path

A = Owner(network="net1", container_id="a", ifname="eth0")
B = Owner(network="net1", container_id="b", ifname="eth0")


def pm(port: int, host_ip: str = "", proto: str = "tcp") -> PortMapping:
    return PortMapping(host_port=port, container_port=80, protocol=proto, host_ip=host_ip)


def record(owner: Owner, sd: str, ports: tuple[str, ...] = ()) -> state.Record:
    cfg = FirewallConfig(backend="nftables", ip_masq=True, state_dir=sd, port_mappings=(pm(8080, "192.0.2.1"),),
                         conditions_v4=("-i", "eth0"))
    return state.Record(owner=owner, backend="nftables", config=cfg, ports=ports,
                        addresses=(ipaddress.ip_interface("10.99.0.2/24"), ipaddress.ip_interface("fd00::2/64")))


def claim(sd: str, owner: Owner, *maps: PortMapping) -> tuple[str, ...]:
    with state.ports_lock(sd):
        entries = state.claim_ports(sd, owner, maps)
        state.write(record(owner, sd, entries))
    return entries


def test_record_round_trips(tmp_path: Path) -> None:
    rec = record(A, str(tmp_path), ("tcp_8080/192.0.2.1",))
    state.write(rec)
    assert state.load(str(tmp_path), A) == rec
    assert [r.owner for r in state.records(str(tmp_path), "net1")] == [A]
    assert str(state.list_attachments(str(tmp_path))[0]).startswith(f"a eth0 [{A.key}] nftables 10.99.0.2/24")
    state.remove(str(tmp_path), A)
    assert state.load(str(tmp_path), A) is None


@pytest.mark.parametrize(("mine", "theirs"), [
    ("", ""), ("", "192.0.2.1"), ("0.0.0.0", "192.0.2.1"), ("192.0.2.1", "192.0.2.1"), ("::", "2001:db8::1"),
    ("192.0.2.1", ""),
])
def test_error_when_an_overlapping_host_port_is_taken(tmp_path: Path, mine: str, theirs: str) -> None:
    sd = str(tmp_path)
    claim(sd, A, pm(8080, theirs))
    with pytest.raises(state.PortConflict) as info:
        claim(sd, B, pm(8080, mine))
    assert "tcp/8080" in info.value.msg and A.key in info.value.msg
    assert info.value.code >= 100


@pytest.mark.parametrize(("mine", "theirs"), [
    ("192.0.2.2", "192.0.2.1"), ("0.0.0.0", "::"), ("::", "192.0.2.1"), ("2001:db8::2", "0.0.0.0"),
])
def test_disjoint_host_addresses_share_a_port(tmp_path: Path, mine: str, theirs: str) -> None:
    claim(str(tmp_path), A, pm(8080, theirs))
    claim(str(tmp_path), B, pm(8080, mine))


def test_other_protocol_or_port_does_not_conflict_and_owner_may_reclaim(tmp_path: Path) -> None:
    sd = str(tmp_path)
    claim(sd, A, pm(8080))
    claim(sd, B, pm(8080, proto="udp"), pm(8081))
    assert claim(sd, A, pm(8080)) == ("tcp_8080/any",)


def test_stale_entry_without_a_record_is_reclaimed(tmp_path: Path) -> None:
    sd = str(tmp_path)
    claim(sd, A, pm(8080))
    state.remove(sd, A)  # an ADD that died after claiming
    assert claim(sd, B, pm(8080)) == ("tcp_8080/any",)


def test_release_removes_only_own_entries(tmp_path: Path) -> None:
    sd = str(tmp_path)
    entries = claim(sd, A, pm(8080))
    state.release_ports(sd, B, entries)
    assert os.path.exists(os.path.join(sd, "ports", "tcp_8080", "any"))
    state.release_ports(sd, A, entries)
    assert not os.path.exists(os.path.join(sd, "ports", "tcp_8080"))
