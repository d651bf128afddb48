"""A firewall DEL that meets an I/O error in its state dir must not answer ok while leaving something (issue 13,
the long fault sweep's "shared chain registration" and "unreadable firewall record"): it carries on with what
it can do, fails with 5 (the runtime repeats a failed DEL, never an ok one), and the repeat finishes the job.
The real nftables backend with its nft calls recorded instead of run (no root, no nft); iptables is a fake."""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import TYPE_CHECKING

import pytest

from cni_ignite.errors import CniError, IOFailure
from cni_ignite.firewall import nftables, state
from cni_ignite.firewall.base import Attachment, FirewallConfig, Owner, PortMapping
from cni_ignite.firewall.core import RuleFirewall

if TYPE_CHECKING:
    from pathlib import Path

OWNER = Owner(network="net1", container_id="c1", ifname="eth0")


class NoRules:
    """The iptables backend of a host without iptables rules of ours."""

    name, layout = "iptables", 1

    def remove_by_key(self, key: str) -> None:
        pass


class Nft:
    """What the nftables backend sent: transactions and the shared chains it tried to drop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        self.dropped: list[str] = []
        monkeypatch.setattr(nftables, "_apply", lambda text, what: self.texts.append(text))
        monkeypatch.setattr(nftables, "_drop_unused", self.dropped.extend)
        monkeypatch.setattr(nftables, "list_table", list)  # the table is there, nothing of the key is left

    def deleted_chains(self) -> set[str]:
        return {line.split()[-1] for t in self.texts for line in t.splitlines() if line.startswith("delete chain")}


def cfg(sd: str) -> FirewallConfig:
    return FirewallConfig(ip_masq=True, state_dir=sd, backend="nftables",
                          port_mappings=(PortMapping(host_port=8080, container_port=80, protocol="tcp"),))


def added(sd: str) -> RuleFirewall:
    fw = RuleFirewall(sd)
    fw._backends["iptables"] = NoRules()  # type: ignore[assignment]
    fw.add(Attachment(owner=OWNER, addresses=(ipaddress.ip_interface("10.99.0.2/24"),), host_iface="br0"), cfg(sd))
    return fw


def files(sd: str) -> list[str]:
    """Every file under sd except lock files."""
    return sorted(os.path.relpath(os.path.join(d, f), sd) for d, _, fs in os.walk(sd) for f in fs if f != "lock")


def failing(monkeypatch: pytest.MonkeyPatch, name: str, part: str, err: int, times: int) -> list[int]:
    """os.<name> (or the builtin open seen by state.py) fails with err for paths containing part, `times` times."""
    left = [times]
    real = open if name == "open" else getattr(os, name)

    def call(path: str, *a: object, **kw: object) -> object:
        if part in str(path) and left[0] > 0:
            left[0] -= 1
            raise OSError(err, os.strerror(err), path)
        return real(path, *a, **kw)

    if name == "open":
        monkeypatch.setattr(state, "open", call, raising=False)
    else:
        monkeypatch.setattr(os, name, call)
    return left


def test_a_registration_that_cannot_be_removed_fails_shared_unref(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sd = str(tmp_path)
    assert state.shared_ref(sd, "m-1", "a") is True
    failing(monkeypatch, "unlink", "_nft-shared", errno.EIO, 1)
    with pytest.raises(IOFailure):
        state.shared_unref(sd, "m-1", "a")
    assert files(sd) == ["_nft-shared/m-1/a"]  # still registered: the chain counts as used
    assert state.shared_unref(sd, "m-1", "a") is True
    assert state.shared_unref(sd, "m-1", "a") is True  # not registered (any more): no error


@pytest.mark.parametrize("err", [errno.EIO, errno.EACCES])
def test_del_whose_registration_cannot_be_removed_fails_and_its_repeat_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    sd = str(tmp_path)
    nft = Nft(monkeypatch)
    fw = added(sd)
    chains = sorted(os.listdir(os.path.join(sd, state.SHARED_DIR)))  # masquerade and hairpin
    assert chains
    nft.texts.clear()
    left = failing(monkeypatch, "unlink", "_nft-shared", err, 1000)  # a lasting failure
    with pytest.raises(CniError) as info:
        fw.delete(OWNER, cfg(sd))
    assert info.value.code == 5 and "shared chain" in str(info.value)
    assert any("delete element" in t for t in nft.texts)  # carried on: the attachment's elements went
    assert not set(chains) & (nft.deleted_chains() | set(nft.dropped))  # still registered as used
    assert files(sd) == sorted([*(f"_nft-shared/{c}/{OWNER.key}" for c in chains), f"net1/{OWNER.key}",
                                "ports/tcp_8080/any"])
    left[0] = 0
    fw.delete(OWNER, cfg(sd))  # the runtime's repeat
    assert set(chains) <= nft.deleted_chains() | set(nft.dropped)
    assert files(sd) == []


def test_del_whose_registration_fails_once_retries_it_and_finishes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact pass fails on the registration, the record-less pass retries it: ok, nothing left (the strace
    reproduction in tests/faults/test_del_fault_fixes.py is this case)."""
    sd = str(tmp_path)
    nft = Nft(monkeypatch)
    fw = added(sd)
    chains = sorted(os.listdir(os.path.join(sd, state.SHARED_DIR)))
    assert chains
    failing(monkeypatch, "unlink", "_nft-shared", errno.EIO, 1)
    fw.delete(OWNER, cfg(sd))
    assert set(chains) <= nft.deleted_chains() | set(nft.dropped)
    assert files(sd) == []


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC, errno.EACCES])
def test_del_with_an_unreadable_record_fails_keeps_it_and_its_repeat_finishes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    sd = str(tmp_path)
    nft = Nft(monkeypatch)
    fw = added(sd)
    failing(monkeypatch, "open", f"net1/{OWNER.key}", err, 1)
    with pytest.raises(CniError) as info:
        fw.delete(OWNER, cfg(sd))
    assert info.value.code == 5 and "could not be read" in str(info.value)
    # the record-less pass ran (it lists the table); the record and the port claim it names are kept
    assert f"net1/{OWNER.key}" in files(sd) and "ports/tcp_8080/any" in files(sd)
    fw.delete(OWNER, cfg(sd))
    assert any("delete element" in t for t in nft.texts)
    assert files(sd) == []


def test_del_with_a_record_whose_content_is_invalid_still_answers_ok(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an I/O error: no repeat would read it either, so the DEL removes the rules by key and answers ok
    (the record stays, as before)."""
    sd = str(tmp_path)
    Nft(monkeypatch)
    fw = added(sd)
    with open(state.record_path(sd, OWNER), "w", encoding="utf-8") as fh:
        fh.write("{not json")
    fw.delete(OWNER, cfg(sd))
    assert f"net1/{OWNER.key}" in files(sd)
