"""Reproductions of the firewall-state and skeleton defects the fault sweep found (formerly xfail entries of
KNOWN in test_fault_sweep.py), now fixed: each faults one call of a clean run at the point it names (the
first `syscall` at or after the trace line matching `after`), then DEL and DEL again; the run must answer a
meaningful code, and nothing may be left. Below them, the same firewall states made directly in a temp
stateDir with a fake backend (no root, no strace)."""

from __future__ import annotations

import ipaddress
import os
import shutil
from typing import TYPE_CHECKING, NamedTuple

import pytest
from harness import Case, Scenario, run_case

from cni_ignite.errors import CniError, IOFailure
from cni_ignite.firewall import state
from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
from cni_ignite.firewall.core import RuleFirewall

if TYPE_CHECKING:
    from pathlib import Path



class Repro(NamedTuple):
    plugin: str
    verb: str
    syscall: str
    fault: str
    after: str
    code: int | None  # the code the faulted run must answer (None: killed)


RECORD_TMP = r"state/faultnet/tmp/[0-9a-f]+\.\d+"  # the attachment's record, written whole
CLAIM_TMP = r"state/ports/tcp_8080/\.any\.tmp"  # the port registry entry, written whole

REPROS = {
    # skel._load: dlopen of fcntl's .so failing (EACCES, ENOSPC) escaped as ImportError: 999 + traceback
    "skel-import-eacces": Repro("ipam", "ADD", "openat", "EACCES", r"lib-dynload/fcntl", 5),
    "skel-import-enospc": Repro("ipam", "ADD", "openat", "ENOSPC", r"lib-dynload/fcntl", 5),
    # firewall add(): a failed record write after claim_ports left ports/tcp_8080/any (no record: DEL never
    # released it); a killed one left its temp file (now tmp/<key>.<pid>) too, which nothing removed
    "record-write-eio": Repro("bridge", "ADD", "write", "EIO", RECORD_TMP, 5),
    "record-write-kill": Repro("bridge", "ADD", "write", "KILL", RECORD_TMP, None),
    # claim_ports: a failed claim left the port's (empty) folder; a killed one .any.tmp<pid> in it
    "claim-write-eio": Repro("bridge", "ADD", "write", "EIO", CLAIM_TMP, 5),
    "claim-write-kill": Repro("bridge", "ADD", "write", "KILL", CLAIM_TMP, None),
    "claim-rename-enospc": Repro("bridge", "ADD", "rename", "ENOSPC", CLAIM_TMP, 5),
    "claim-mkdir-eacces": Repro("bridge", "ADD", "mkdir", "EACCES", r"state/ports/tcp_8080", 5),
}


@pytest.mark.parametrize("name", list(REPROS))
@pytest.mark.privileged
@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
def test_fault_answers_a_meaningful_code_and_leaves_nothing(name: str) -> None:
    r = REPROS[name]
    with Scenario(r.plugin) as sc:
        sc.prepare()
        index = sc.locate(r.verb, r.syscall, r.after)
        case = run_case(sc, Case(r.plugin, r.verb, r.syscall, index, r.fault))
    assert case.injected, f"{case.name} was not injected"
    assert not case.problems, f"{case.name} ({case.outcome}): {case.problems} {case.detail}"
    assert case.outcome == ("killed" if r.code is None else f"code-{r.code}"), (case.outcome, case.detail)


# ------------------------------------------------------------------- the same states, without root

OWNER = Owner(network="net1", container_id="c1", ifname="eth0")
OTHER = Owner(network="net1", container_id="c2", ifname="eth0")


class FakeBackend:
    name = "nftables"
    layout = 2

    def __init__(self) -> None:
        self.calls: list[str] = []

    def apply(self, att: Attachment, cfg: FirewallConfig, *, fresh: bool = False, joint: object = None) -> None:
        self.calls.append("apply")

    def remove_exact(self, att: Attachment, cfg: FirewallConfig, layout: int = 2, joint: object = None) -> None:
        self.calls.append("remove_exact")

    def remove_by_key(self, key: str) -> None:
        self.calls.append("remove_by_key")

    def problems(self, att: Attachment, cfg: FirewallConfig, layout: int = 2) -> list[str]:
        return []

    def prune(self) -> None:
        pass


def firewall(sd: str) -> RuleFirewall:
    fw = RuleFirewall(sd)
    fake = FakeBackend()
    fw._backends.update({"nftables": fake, "iptables": fake})
    return fw


def cfg(sd: str, *ports: int) -> FirewallConfig:
    return FirewallConfig(ip_masq=True, state_dir=sd, backend="nftables",
                          port_mappings=tuple(PortMapping(host_port=p, container_port=80, protocol="tcp")
                                              for p in ports))


def att(owner: Owner = OWNER) -> Attachment:
    return Attachment(owner=owner, addresses=(ipaddress.ip_interface("10.99.0.2/24"),), host_iface="br0")


def leftovers(sd: str) -> list[str]:
    """Every file and folder under sd except lock files and the (empty) ports and network folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(sd):
        rel = os.path.relpath(dirpath, sd)
        keep = {"ports", "net1"} if rel == "." else {"tmp"} if rel == "net1" else set()  # tmp/: record writes
        out += [os.path.normpath(os.path.join(rel, d)) + "/" for d in dirnames if d not in keep]
        out += [os.path.normpath(os.path.join(rel, f)) for f in filenames if f != "lock"]
    return sorted(out)


def test_a_failed_record_write_leaves_no_port_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd = str(tmp_path)

    def failing_write(rec: state.Record) -> None:
        raise IOFailure("cannot write firewall state", "EIO")

    monkeypatch.setattr(state, "write", failing_write)
    with pytest.raises(CniError) as info:
        firewall(sd).add(att(), cfg(sd, 8080))
    assert info.value.code == 5
    assert leftovers(sd) == []


def test_a_failed_claim_leaves_no_entry_no_folder_and_no_record(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sd = str(tmp_path)
    original = state._write_whole

    def failing_claim(path: str, text: str, tmp: str) -> None:
        if "/ports/" in path:
            raise OSError(28, "No space left on device")
        original(path, text, tmp)

    monkeypatch.setattr(state, "_write_whole", failing_claim)
    fw = firewall(sd)
    with pytest.raises(CniError) as info:
        fw.add(att(), cfg(sd, 8080))
    assert info.value.code == 5
    assert leftovers(sd) == []
    fw.delete(OWNER, cfg(sd))
    assert leftovers(sd) == []


def test_a_conflict_on_a_later_port_releases_the_earlier_claims(tmp_path: Path) -> None:
    sd = str(tmp_path)
    fw = firewall(sd)
    fw.add(att(OTHER), cfg(sd, 8081))
    with pytest.raises(state.PortConflict):
        fw.add(att(), cfg(sd, 8080, 8081))
    assert leftovers(sd) == [f"net1/{OTHER.key}", "ports/tcp_8081/", "ports/tcp_8081/any"]
    fw.delete(OTHER, cfg(sd))
    assert leftovers(sd) == []


def test_del_after_an_add_killed_while_claiming_removes_the_record_and_the_temp_entry(tmp_path: Path) -> None:
    """The ADD wrote its record naming tcp_8080/any, then died writing the claim's temp file."""
    sd = str(tmp_path)
    c = cfg(sd, 8080)
    state.write(state.Record(owner=OWNER, backend="nftables", addresses=att().addresses, config=c,
                             ports=state.port_entries(c.port_mappings), host_iface="br0", layout=2))
    os.makedirs(os.path.join(sd, "ports", "tcp_8080"))
    with open(os.path.join(sd, "ports", "tcp_8080", ".any.tmp4242"), "w", encoding="utf-8") as fh:
        fh.write("net1/")
    firewall(sd).delete(OWNER, cfg(sd))
    assert leftovers(sd) == []


def test_release_removes_a_dead_writers_temp_entry_and_keeps_other_addresses(tmp_path: Path) -> None:
    sd = str(tmp_path)
    fw = firewall(sd)
    fw.add(att(), cfg(sd, 8080))
    folder = os.path.join(sd, "ports", "tcp_8080")
    with open(os.path.join(folder, ".any.tmp4242"), "w", encoding="utf-8") as fh:
        fh.write("net1/")
    fw.delete(OWNER, cfg(sd))
    assert leftovers(sd) == []
    fw.add(att(OTHER), cfg(sd, 8080)._replace(port_mappings=(
        PortMapping(host_port=8080, container_port=80, protocol="tcp", host_ip="192.0.2.1"),)))
    fw.add(att(), cfg(sd, 8080)._replace(port_mappings=(
        PortMapping(host_port=8080, container_port=80, protocol="tcp", host_ip="192.0.2.2"),)))
    with open(os.path.join(folder, ".192.0.2.2.tmp4242"), "w", encoding="utf-8") as fh:
        fh.write("net1/")
    fw.delete(OWNER, cfg(sd))
    assert leftovers(sd) == [f"net1/{OTHER.key}", "ports/tcp_8080/", "ports/tcp_8080/192.0.2.1"]


@pytest.mark.parametrize("with_record", [False, True], ids=["killed first ADD", "killed repeated ADD"])
def test_del_removes_the_record_temp_file_of_a_killed_writer(tmp_path: Path, with_record: bool) -> None:
    sd = str(tmp_path)
    fw = firewall(sd)
    if with_record:
        fw.add(att(), cfg(sd))
    fw.add(att(OTHER), cfg(sd))
    path = state.record_path(sd, OWNER)
    os.makedirs(os.path.join(os.path.dirname(path), state.TMP), exist_ok=True)
    with open(os.path.join(os.path.dirname(path), state.TMP, f"{OWNER.key}.4242"), "w", encoding="utf-8") as fh:
        fh.write('{"network": "net1", "contain')  # killed mid-write
    fw.delete(OWNER, cfg(sd))
    assert leftovers(sd) == [f"net1/{OTHER.key}"]  # another key's record stays
