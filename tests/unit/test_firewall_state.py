"""State records and the host port registry (no root needed: a temporary state_dir)."""

from __future__ import annotations

import ipaddress
import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.errors import CniError
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


def test_release_cannot_delete_an_entry_a_concurrent_add_just_claimed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A's DEL has removed its record and is releasing; B's ADD (another thread: another flock) judges A's
    entry stale and claims the port right after A's release read the entry. A must not then delete B's
    entry, else a third attachment C gets the port while B holds it."""
    import threading

    sd = str(tmp_path)
    entries = claim(sd, A, pm(8080))
    state.remove(sd, A)  # DEL: the record goes first, then the registry entries
    original, fired, done = state._read, [], threading.Event()

    def claim_b() -> None:
        claim(sd, B, pm(8080))
        done.set()

    def racing_read(path: str) -> str:
        value = original(path)
        if not fired:
            fired.append(path)
            worker = threading.Thread(target=claim_b)
            worker.start()
            worker.join(timeout=0.5)  # with the fix B waits for the lock: it claims after the release
        return value

    monkeypatch.setattr(state, "_read", racing_read)
    state.release_ports(sd, A, entries)
    assert done.wait(timeout=10), "B's claim never finished"
    monkeypatch.setattr(state, "_read", original)
    assert fired
    c = Owner(network="net1", container_id="c", ifname="eth0")
    with pytest.raises(state.PortConflict):
        claim(sd, c, pm(8080))


def test_release_inside_the_lock_of_the_same_thread_does_not_deadlock(tmp_path: Path) -> None:
    import threading

    sd = str(tmp_path)
    entries = claim(sd, A, pm(8080))

    def nested() -> None:
        with state.ports_lock(sd):
            state.remove(sd, A)
            state.release_ports(sd, A, entries)

    worker = threading.Thread(target=nested, daemon=True)
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive(), "release_ports deadlocked on the lock its own thread holds"
    assert not os.path.exists(os.path.join(sd, "ports", "tcp_8080"))


def test_registry_entries_are_written_whole_and_leftover_temp_files_are_cleared(tmp_path: Path) -> None:
    sd = str(tmp_path)
    folder = os.path.join(sd, "ports", "tcp_8080")
    os.makedirs(folder)
    with open(os.path.join(folder, ".any.tmp4242"), "w", encoding="utf-8") as fh:
        fh.write("net1/dead")  # a writer that died between writing and renaming
    assert claim(sd, A, pm(8080)) == ("tcp_8080/any",)
    assert os.listdir(folder) == ["any"]
    with open(os.path.join(folder, "any"), encoding="utf-8") as fh:
        assert fh.read() == f"net1/{A.key}\n"


def test_a_file_system_failure_while_claiming_is_a_cni_io_error(tmp_path: Path) -> None:
    sd = str(tmp_path)
    os.makedirs(os.path.join(sd, "ports"))
    with open(os.path.join(sd, "ports", "tcp_8080"), "w", encoding="utf-8"):
        pass  # a file where the port's folder belongs
    with pytest.raises(CniError) as info:
        claim(sd, A, pm(8080))
    assert info.value.code == 5 and "tcp/8080" in info.value.msg


def test_release_ignores_entries_that_are_not_registry_entries(tmp_path: Path) -> None:
    sd = str(tmp_path)
    claim(sd, A, pm(8080))
    victim = tmp_path / "victim"
    victim.write_text(f"net1/{A.key}\n")
    state.release_ports(sd, A, ("../victim", "tcp_8080/../../victim", "tcp_0/any", "tcp_8080/fe80::1%lo"))
    assert victim.exists()


@pytest.mark.parametrize(("where", "value"), [
    ("addresses", ["fe80::2%lo\nCOMMIT/64"]),
    ("addresses", ["10.99.0.2/24 "]),
    ("hostIP", "fe80::1%lo\nCOMMIT\n*filter\n-I INPUT 1 -j ACCEPT"),
    ("conditionsV4", ["-s 1.2.3.4\n-A INPUT -j ACCEPT"]),
    ("externalSetMarkChain", "X\n-A INPUT -j ACCEPT"),
    ("ports", ["../../etc/passwd"]),
    ("backend", "firewalld"),
])
def test_a_record_with_values_that_would_reach_a_rule_script_unparsed_is_unreadable(
        tmp_path: Path, where: str, value: object) -> None:
    import json

    sd = str(tmp_path)
    state.write(record(A, sd, ("tcp_8080/192.0.2.1",)))
    path = state.record_path(sd, A)
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if where == "hostIP":
        doc["config"]["portMappings"][0]["hostIP"] = value
    elif where in {"conditionsV4", "externalSetMarkChain"}:
        doc["config"][where] = value
    else:
        doc[where] = value
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    with pytest.raises(CniError) as info:
        state.load(sd, A)
    assert info.value.code == 5
    assert list(state.records(sd, "net1")) == []


def test_a_record_with_an_external_mark_chain_round_trips(tmp_path: Path) -> None:
    sd = str(tmp_path)
    rec = record(A, sd)._replace(backend="iptables")
    rec = rec._replace(config=rec.config._replace(backend="iptables", external_set_mark_chain="KUBE-MARK-MASQ"))
    state.write(rec)
    assert state.load(sd, A) == rec


def test_shared_chain_users_tell_the_first_and_the_last_without_listing(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert state.shared_ref(d, "m-1", "a") is True
    assert state.shared_ref(d, "m-1", "b") is False
    assert state.shared_ref(d, "m-1", "a") is False  # a repeated ADD is no new user
    assert state.shared_unref(d, "m-1", "a") is False
    assert state.shared_unref(d, "m-1", "b") is True  # the last one: the caller deletes the chain
    # No user is registered any more: a repeated DEL (or one after a killed DEL) may try again; the kernel
    # refuses to delete a chain an element still jumps to.
    assert state.shared_unref(d, "m-1", "b") is True
    assert state.shared_ref(d, "m-1", "c") is True
    assert [r.owner for r in state.records(d)] == []  # the folder is no network's


def test_removing_a_record_lists_only_its_temp_folder_never_the_records(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sd = str(tmp_path)
    for i in range(50):
        state.write(record(Owner(network="net1", container_id=f"c{i}", ifname="eth0"), sd))
    state.write(record(A, sd))
    folder = os.path.dirname(state.record_path(sd, A))
    dead = os.path.join(folder, state.TMP, f"{A.key}.4242")  # A's writer killed mid-write
    with open(dead, "w", encoding="utf-8") as fh:
        fh.write('{"network": "ne')
    listed: list[str] = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": listed.append(os.fspath(p)) or real(p))
    monkeypatch.setattr(os, "scandir", lambda p=".": pytest.fail(f"scandir({p})"))
    state.remove(sd, A)
    assert [os.path.normpath(p) for p in listed] == [os.path.join(folder, state.TMP)]
    assert not os.path.exists(state.record_path(sd, A)) and not os.path.exists(dead)
    monkeypatch.undo()
    assert len(list(state.records(sd, "net1"))) == 50  # the others' records stay, tmp/ is no record
